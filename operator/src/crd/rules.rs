//! CEL validation rules (`x-kubernetes-validations`) of the ShardCluster CRD: the cross-field
//! rules the API server can enforce, so a bad edit is refused at `kubectl apply` time. The
//! operator keeps checking the same things (crate::cluster::validate) as defence, for objects written
//! before a rule existed.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, ValidationRule,
};

use crate::cluster::desired::pod_settings::{RESERVED_LABEL_PREFIX, reserved_label_keys};
use crate::cluster::desired::tuning::{DEFAULT_CACHE_BYTES, DEFAULT_MEMTABLE_BYTES, MEMTABLES};
use crate::cluster::validate::MAX_NAME;

fn rule(rule: &str, message: &str, field_path: Option<&str>) -> ValidationRule {
    ValidationRule {
        rule: rule.to_string(),
        message: Some(message.to_string()),
        field_path: field_path.map(str::to_string),
        ..Default::default()
    }
}

fn push(schema: &mut JSONSchemaProps, r: ValidationRule) {
    schema
        .x_kubernetes_validations
        .get_or_insert_with(Vec::new)
        .push(r);
}

fn property<'a>(
    props: &'a mut Option<BTreeMap<String, JSONSchemaProps>>,
    name: &str,
) -> Option<&'a mut JSONSchemaProps> {
    props.as_mut().and_then(|p| p.get_mut(name))
}

/// Pod labels: none of the keys the operator or the StatefulSet controller owns. Map
/// membership (`in`) and a constant prefix keep the estimated cost small.
fn reserved_labels_rule() -> ValidationRule {
    let mut checks: Vec<String> = reserved_label_keys()
        .iter()
        .map(|k| format!("!('{k}' in self)"))
        .collect();
    checks.push(format!(
        "self.all(k, !k.startsWith('{RESERVED_LABEL_PREFIX}'))"
    ));
    rule(
        &checks.join(" && "),
        &format!(
            "spec.pod.labels must not set {} or any {RESERVED_LABEL_PREFIX} key: the operator \
             and the StatefulSet controller own them (they select the members)",
            reserved_label_keys().join(", ")
        ),
        None,
    )
}

/// A tuning size: a whole number of bytes at least `min`.
fn tuning_size_rule(field: &str, min: &str, message: &str) -> ValidationRule {
    let q = format!("quantity(string(self.{field}))");
    rule(
        &format!(
            "!has(self.{field}) || (isQuantity(string(self.{field})) && {q}.isInteger() && \
             {q}.compareTo(quantity('{min}')) >= 0)"
        ),
        message,
        Some(&format!(".{field}")),
    )
}

/// Written tuning must fit in a written memory limit: read cache + 4 memtables <= limit
/// (defaults where a size is unset). Malformed sizes are left to the size rules.
fn tuning_fits_limit_rule() -> ValidationRule {
    let size = |field: &str, default: u64| {
        format!(
            "(has(self.tuning.{field}) ? quantity(string(self.tuning.{field})) : \
             quantity('{}Mi'))",
            default >> 20
        )
    };
    let memtable = size("memtableBytes", DEFAULT_MEMTABLE_BYTES);
    let mut sum = size("cacheBytes", DEFAULT_CACHE_BYTES);
    for _ in 0..MEMTABLES {
        sum.push_str(&format!(".add({memtable})"));
    }
    let malformed = |field: &str| {
        format!("(has(self.tuning.{field}) && !isQuantity(string(self.tuning.{field})))")
    };
    rule(
        &format!(
            "!has(self.tuning) || !has(self.resources) || !has(self.resources.limits) || \
             !('memory' in self.resources.limits) || \
             !isQuantity(string(self.resources.limits['memory'])) || {} || {} || \
             {sum}.compareTo(quantity(string(self.resources.limits['memory']))) <= 0",
            malformed("cacheBytes"),
            malformed("memtableBytes"),
        ),
        "spec.resources.limits.memory must hold the node's read cache plus 4 memtables of \
         spec.tuning (and about 384Mi for the rest of the process): raise the limit or shrink \
         spec.tuning",
        Some(".resources.limits"),
    )
}

/// The rules on the object root (they may read `metadata.name`) and on spec fields.
pub fn add_shard_cluster_rules(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        push(
            root,
            rule(
                &format!(
                    "size(self.metadata.name) <= {MAX_NAME} && self.metadata.name.matches('^[a-z]')"
                ),
                &format!(
                    "metadata.name must have at most {MAX_NAME} characters and start with a \
                     letter: it names the StatefulSet, whose pods carry a <name>-<revision hash> \
                     label of at most 63 characters"
                ),
                None,
            ),
        );
        push(
            root,
            rule(
                // No startsWith(self.metadata.name): 1.35's cost estimate takes metadata.name as
                // unbounded and refuses that rule (62x over budget); substring and == pass.
                "!has(self.spec.members) || self.spec.members.all(m, \
                 size(m.name) > size(self.metadata.name) + 1 && \
                 m.name.substring(0, size(self.metadata.name)) == self.metadata.name && \
                 m.name.substring(size(self.metadata.name)).matches('^-(0|[1-9][0-9]*)$'))",
                "spec.members: every name must be a member of this cluster, <metadata.name>-<ordinal>",
                Some(".spec.members"),
            ),
        );
        let Some(spec) = property(&mut root.properties, "spec") else {
            continue;
        };
        push(spec, tuning_fits_limit_rule());
        if let Some(labels) = property(&mut spec.properties, "pod")
            .and_then(|pod| property(&mut pod.properties, "labels"))
        {
            push(labels, reserved_labels_rule());
        }
        if let Some(tuning) = property(&mut spec.properties, "tuning") {
            push(
                tuning,
                tuning_size_rule(
                    "cacheBytes",
                    "0",
                    "spec.tuning.cacheBytes must be a whole, non-negative number of bytes \
                     (e.g. 256Mi; 0 turns the cache off)",
                ),
            );
            push(
                tuning,
                tuning_size_rule(
                    "memtableBytes",
                    "1Mi",
                    "spec.tuning.memtableBytes must be a whole number of bytes, at least 1Mi",
                ),
            );
        }
        if let Some(vnodes) = property(&mut spec.properties, "vnodes") {
            push(
                vnodes,
                rule(
                    "self == oldSelf",
                    "spec.vnodes is fixed when the cluster is created: set it back",
                    None,
                ),
            );
        }
        if let Some(storage) = property(&mut spec.properties, "storage") {
            push(
                storage,
                rule(
                    "self == oldSelf",
                    "spec.storage is immutable: a StatefulSet's volume claim templates cannot \
                     change; set it back",
                    None,
                ),
            );
        }
        if let Some(resources) = property(&mut spec.properties, "resources") {
            push(
                resources,
                rule(
                    "!has(self.requests) || !has(self.limits) || self.requests.all(k, \
                     !(k in self.limits) || !isQuantity(string(self.requests[k])) || \
                     !isQuantity(string(self.limits[k])) || \
                     quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)",
                    "spec.resources: a request must not be above its limit",
                    None,
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;
    use crate::crd::ShardCluster;

    fn rules_of(schema: &JSONSchemaProps) -> Vec<String> {
        schema
            .x_kubernetes_validations
            .iter()
            .flatten()
            .map(|r| r.rule.clone())
            .collect()
    }

    #[test]
    fn cross_field_rules_sit_where_they_can_see_their_fields() {
        let mut crd = ShardCluster::crd();
        add_shard_cluster_rules(&mut crd);
        let root = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .unwrap();
        let root_rules = rules_of(root);
        assert_eq!(root_rules.len(), 2);
        assert!(root_rules[0].contains(&format!("<= {MAX_NAME}")));
        assert!(root_rules[1].contains("self.spec.members.all"));
        let spec = &root.properties.as_ref().unwrap()["spec"];
        let props = spec.properties.as_ref().unwrap();
        assert_eq!(rules_of(&props["vnodes"]), ["self == oldSelf"]);
        assert_eq!(rules_of(&props["storage"]), ["self == oldSelf"]);
        assert_eq!(rules_of(&props["resources"]).len(), 1);
        assert_eq!(rules_of(spec).len(), 1);
        assert!(rules_of(spec)[0].contains("self.resources.limits['memory']"));
        let labels = &props["pod"].properties.as_ref().unwrap()["labels"];
        let label_rule = &rules_of(labels)[0];
        for key in reserved_label_keys() {
            assert!(label_rule.contains(&format!("!('{key}' in self)")), "{key}");
        }
        assert!(label_rule.contains("startsWith('ringshift.dev/')"));
        let tuning = rules_of(&props["tuning"]);
        assert_eq!(tuning.len(), 2);
        assert!(tuning[1].contains("quantity('1Mi')"));
        // The fit rule uses the node's defaults for unset sizes.
        assert!(rules_of(spec)[0].contains("quantity('256Mi')"));
        assert!(rules_of(spec)[0].contains("quantity('16Mi')"));
    }

    #[test]
    fn rules_over_lists_and_maps_are_bounded() {
        // The API server refuses a rule whose estimated cost is unbounded: every list or map a
        // rule iterates has a maximum size, and the strings it matches a maximum length.
        let crd = ShardCluster::crd();
        let spec = serde_json::to_value(
            &crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .unwrap()
                .properties
                .as_ref()
                .unwrap()["spec"],
        )
        .unwrap();
        assert!(spec["properties"]["storage"]["properties"]["size"]["maxLength"].is_number());
        let members = &spec["properties"]["members"];
        assert!(members["maxItems"].is_number(), "{members}");
        assert!(members["items"]["properties"]["name"]["maxLength"].is_number());
        assert!(spec["properties"]["pod"]["properties"]["labels"]["maxProperties"].is_number());
        for field in ["cacheBytes", "memtableBytes"] {
            assert!(spec["properties"]["tuning"]["properties"][field]["maxLength"].is_number());
        }
        for kind in ["requests", "limits"] {
            let map = &spec["properties"]["resources"]["properties"][kind];
            assert!(map["maxProperties"].is_number(), "{map}");
            assert!(
                map["additionalProperties"]["maxLength"].is_number(),
                "{map}"
            );
        }
    }
}
