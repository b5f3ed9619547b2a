/** Protobuf facts both direct codecs (json-wire.ts, wire-json.ts) need. */
import { ScalarType, type DescField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";

/** google.protobuf.FeatureSet.FieldPresence values, as DescField.presence holds them. */
export const fieldPresence = { implicit: 2, legacyRequired: 3 } as const;

/** Fields the direct codecs leave to protobuf-es: proto2 `required` and group (delimited) encoding. */
export function leftToProtobufEs(field: DescField): boolean {
  return field.presence === fieldPresence.legacyRequired || ("delimitedEncoding" in field && field.delimitedEncoding);
}

/** The wire type protobuf writes a scalar with (lists of numbers may also come packed). */
export function scalarWireType(scalar: ScalarType): WireType {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return WireType.LengthDelimited;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WireType.Bit64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return WireType.Bit32;
    default:
      return WireType.Varint;
  }
}
