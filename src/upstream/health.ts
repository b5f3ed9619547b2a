/**
 * Active health checking: grpc.health.v1.Health/Check against one endpoint every
 * `intervalMs`, each check bounded by `timeoutMs`. `HealthVerdict` turns the results into a
 * status with thresholds (pure); `HealthProbe` runs the checks (one at a time, unref'd timer,
 * stopped by `stop()`).
 *
 * An endpoint is healthy until its first check says otherwise: checks start the moment the
 * endpoint joins, and the first answer decides at once; after that, `unhealthyThreshold`
 * failures in a row take it out and `healthyThreshold` successes bring it back.
 */
import type { Transport } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.ts";
import { unref } from "./timers.ts";

export interface HealthCheckOptions {
  /** The service name sent in the request; "" asks about the server as a whole. */
  readonly service: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
}

export type HealthStatus = "unknown" | "serving" | "not_serving";

export class HealthVerdict {
  #status: HealthStatus = "unknown";
  /** Results in a row that disagree with the status. */
  #against = 0;
  readonly #options: Pick<HealthCheckOptions, "healthyThreshold" | "unhealthyThreshold">;

  constructor(options: Pick<HealthCheckOptions, "healthyThreshold" | "unhealthyThreshold">) {
    this.#options = options;
  }

  get status(): HealthStatus {
    return this.#status;
  }

  /** Takes calls: serving, or not checked yet. */
  get healthy(): boolean {
    return this.#status !== "not_serving";
  }

  /** One check result; true when the status changed. */
  record(serving: boolean): boolean {
    const next: HealthStatus = serving ? "serving" : "not_serving";
    if (this.#status === next) {
      this.#against = 0;
      return false;
    }
    const threshold = serving ? this.#options.healthyThreshold : this.#options.unhealthyThreshold;
    if (this.#status !== "unknown" && ++this.#against < threshold) return false;
    this.#status = next;
    this.#against = 0;
    return true;
  }
}

export class HealthProbe {
  readonly verdict: HealthVerdict;
  readonly #transport: Transport;
  readonly #options: HealthCheckOptions;
  readonly #onChange: ((status: HealthStatus) => void) | undefined;
  readonly #stop = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastError: string | undefined;

  /** `transport` should not count the checks as calls (no observer). */
  constructor(transport: Transport, options: HealthCheckOptions, onChange?: (status: HealthStatus) => void) {
    this.#transport = transport;
    this.#options = options;
    this.#onChange = onChange;
    this.verdict = new HealthVerdict(options);
  }

  /** Why the last check failed, if it did. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  start(): void {
    void this.#check();
  }

  stop(): void {
    this.#stop.abort();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #check(): Promise<void> {
    const signal = this.#stop.signal;
    let serving: boolean;
    try {
      const response = await this.#transport.unary(
        Health.method.check,
        signal,
        this.#options.timeoutMs,
        undefined,
        { service: this.#options.service },
      );
      serving = response.message.status === HealthCheckResponse_ServingStatus.SERVING;
      this.#lastError = serving ? undefined : HealthCheckResponse_ServingStatus[response.message.status];
    } catch (e) {
      serving = false;
      this.#lastError = (e as Error).message;
    }
    if (signal.aborted) return;
    if (this.verdict.record(serving)) this.#onChange?.(this.verdict.status);
    this.#timer = unref(
      setTimeout(() => {
        this.#timer = undefined;
        void this.#check();
      }, this.#options.intervalMs),
    );
  }
}
