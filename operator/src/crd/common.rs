//! Schema helpers and small types shared by the ringshift resources.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{Schema, SchemaGenerator, json_schema};

/// Conditions as a list-map keyed by `type`, so that server-side apply merges
/// them per type. `type` is required in `Condition`, as the structural schema
/// check demands of a list-map key (required or defaulted).
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "description": "Kubernetes conditions, one per type.",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// A 64-bit unsigned number carried as a decimal string (the API server turns
/// integers above 2^63 into floats).
pub fn u64_string_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": "^[0-9]{1,20}$",
    })
}

/// A Kubernetes-style duration string such as `250ms`, `10m` or `1h30m`.
/// The operator parses it and reports a bad one as a condition.
pub fn duration_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$",
    })
}

/// An object whose shape is owned by another crate (`ringshift-ring`); the
/// API server keeps it as written.
pub fn opaque_object_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// An inclusive hash range `[start, end]` of the 64-bit ring.
#[derive(
    serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema,
)]
pub struct HashRange {
    /// First hash of the range (decimal u64).
    #[schemars(schema_with = "u64_string_schema")]
    pub start: String,
    /// Last hash of the range, inclusive (decimal u64).
    #[schemars(schema_with = "u64_string_schema")]
    pub end: String,
}

/// A resource quantity (`1Gi`, `500m`, `2`): integer or string.
pub fn quantity_schema(_: &mut SchemaGenerator) -> Schema {
    // maxLength bounds the cost the API server estimates for CEL rules that read quantities.
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "maxLength": 64,
    })
}

/// A map of resource names to quantities.
pub fn quantity_map_schema(g: &mut SchemaGenerator) -> Schema {
    let q = quantity_schema(g);
    json_schema!({
        "type": "object",
        "additionalProperties": q,
        "maxProperties": 16,
    })
}
