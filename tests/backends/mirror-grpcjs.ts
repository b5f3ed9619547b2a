/**
 * The mirror.v1.Mirror backend on @grpc/grpc-js, the most used Node gRPC server, for interop:
 * the same behaviour as mirror-connect.ts, served by a real `grpc.Server` whose service
 * definition is built from the descriptors (protobuf-es does the (de)serializing).
 */
import { once, type EventEmitter } from "node:events";
import { create, fromBinary, toBinary, type Message } from "@bufbuild/protobuf";
import { AnySchema, anyPack, type Any } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import {
  Metadata,
  Server,
  ServerCredentials,
  type sendUnaryData,
  type status as GrpcStatus,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.ts";
import {
  createMirrorBehaviour,
  gracefulStopLimitMs,
  mirrorService,
  type MirrorBehaviour,
  type MirrorCall,
  type RunningMirror,
  type StartMirrorOptions,
} from "./mirror-behaviour.ts";

/** The reference mirror backend on grpc-js, listening on 127.0.0.1:0. */
export async function startMirrorGrpcJs(options: StartMirrorOptions = {}): Promise<RunningMirror> {
  const server = new Server();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  const address = `127.0.0.1:${port}`;
  const behaviour = createMirrorBehaviour({ id: options.id ?? address });
  server.addService(mirrorDefinition, grpcJsImpl(behaviour));
  return {
    id: behaviour.id,
    address,
    port,
    cancelledCalls: () => behaviour.ledger.total(),
    async stop({ graceful = true } = {}) {
      if (!graceful) {
        server.forceShutdown();
        return;
      }
      const limit = setTimeout(() => server.forceShutdown(), gracefulStopLimitMs);
      try {
        await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      } finally {
        clearTimeout(limit);
      }
    },
  };
}

/** The grpc-js service definition of mirror.v1.Mirror, from its descriptor. */
const mirrorDefinition: ServiceDefinition = Object.fromEntries(
  mirrorService.methods.map((method) => [
    method.name,
    {
      path: `/${mirrorService.typeName}/${method.name}`,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: (message: Message) => Buffer.from(toBinary(method.input, message)),
      requestDeserialize: (bytes: Buffer) => fromBinary(method.input, bytes),
      responseSerialize: (message: Message) => Buffer.from(toBinary(method.output, message)),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
      originalName: method.localName,
    },
  ]),
);

type AnyCall = ServerUnaryCall<Message, Message> | ServerWritableStream<Message, Message> | ServerReadableStream<Message, Message>;

/** A grpc-js implementation: each method hands its call to the behaviour. */
function grpcJsImpl(behaviour: MirrorBehaviour): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const method of mirrorService.methods) {
    const name = method.name;
    /** The behaviour's view of the call; sends the response header. */
    const begin = (call: AnyCall) => {
      const mirrorCall = mirrorCallOf(call);
      const { header, trailer } = behaviour.responseMetadata(name, mirrorCall);
      call.sendMetadata(metadataOf(header));
      return { mirrorCall, trailer };
    };
    switch (method.methodKind) {
      case "unary":
        impl[name] = (call: ServerUnaryCall<Message, Message>, callback: sendUnaryData<Message>) => {
          const { mirrorCall, trailer } = begin(call);
          behaviour.unary(name, call.request, mirrorCall).then(
            (response) => callback(null, response, metadataOf(trailer)),
            (error) => callback(statusOf(error, trailer)),
          );
        };
        break;
      case "client_streaming":
        impl[name] = (call: ServerReadableStream<Message, Message>, callback: sendUnaryData<Message>) => {
          const { mirrorCall, trailer } = begin(call);
          behaviour.clientStream(name, call, mirrorCall).then(
            (response) => callback(null, response, metadataOf(trailer)),
            (error) => callback(statusOf(error, trailer)),
          );
        };
        break;
      case "server_streaming":
        impl[name] = async (call: ServerWritableStream<Message, Message>) => {
          const { mirrorCall, trailer } = begin(call);
          try {
            for await (const message of behaviour.serverStream(name, call.request, mirrorCall)) {
              // Respect the client's flow control; a cancelled call stops the wait.
              if (!call.write(message)) await once(call, "drain", { signal: mirrorCall.signal });
            }
            call.end(metadataOf(trailer));
          } catch (error) {
            // How grpc-js ends a server stream with a status.
            call.emit("error", statusOf(error, trailer));
          }
        };
        break;
      case "bidi_streaming":
        break; // the mirror service has none; grpc-js answers Unimplemented
    }
  }
  return impl;
}

/** The call's cancellation as an AbortSignal (grpc-js emits "cancelled" for client cancel, deadline and a closed stream). */
function mirrorCallOf(call: AnyCall): MirrorCall {
  const controller = new AbortController();
  if (call.cancelled) controller.abort();
  else (call as EventEmitter).once("cancelled", () => controller.abort());
  const headers = Object.entries(call.metadata.toHttp2Headers()).flatMap(([key, values]) =>
    (Array.isArray(values) ? values : [values]).map((value) => [key, String(value)] as const),
  );
  return { signal: controller.signal, headers };
}

function metadataOf(entries: Readonly<Record<string, string>>): Metadata {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(entries)) metadata.set(key, value);
  return metadata;
}

/** A grpc-js status from the behaviour's ConnectError: its metadata and the trailer, plus
 * its details as a google.rpc.Status in grpc-status-details-bin (grpc-js has no details API). */
function statusOf(error: unknown, trailer: Readonly<Record<string, string>>) {
  const e = ConnectError.from(error);
  const metadata = metadataOf(trailer);
  e.metadata.forEach((value, key) => metadata.set(key, value));
  if (e.details.length > 0) {
    const status = create(StatusSchema, { code: e.code, message: e.rawMessage, details: e.details.map(anyOf) });
    metadata.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, status)));
  }
  // Connect's Code has the gRPC status numbers.
  return { code: e.code as number as GrpcStatus, details: e.rawMessage, metadata };
}

function anyOf(detail: ConnectError["details"][number]): Any {
  if ("desc" in detail) return anyPack(detail.desc, create(detail.desc, detail.value));
  return create(AnySchema, { typeUrl: `type.googleapis.com/${detail.type}`, value: detail.value });
}
