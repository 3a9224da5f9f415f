//! Server-side apply with a stable field manager, skipping writes that would
//! change nothing.

use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cluster::desired::names::FIELD_MANAGER;

/// Whether every field of `desired` has the same value in `live` (fields the
/// server or other managers added to `live` are ignored).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => is_subset(dv, lv),
            None => {
                dv.is_null()
                    || dv.as_array().is_some_and(Vec::is_empty)
                    || dv.as_object().is_some_and(serde_json::Map::is_empty)
            }
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        _ => desired == live,
    }
}

/// Whether `fields` (a managed-fields `fieldsV1` tree) names a field that `desired` no longer
/// has: a map key or optional field the operator applied before and has since dropped (a pod
/// label, a nodeSelector entry, an affinity). [`is_subset`] cannot see those, since fields
/// other managers add look the same; only the operator's own managed fields tell them apart.
/// List items (`k:`, `v:`, `i:` keys) are left to [`is_subset`]'s length comparison.
pub fn drops_owned_fields(desired: &Value, fields: &Value) -> bool {
    let Some(owned) = fields.as_object() else {
        return false;
    };
    owned.iter().any(|(key, sub)| {
        let Some(name) = key.strip_prefix("f:") else {
            return false;
        };
        match desired.get(name) {
            None | Some(Value::Null) => true,
            Some(d @ Value::Object(_)) => drops_owned_fields(d, sub),
            Some(_) => false,
        }
    })
}

/// The `fieldsV1` tree of the operator's server-side applies in `live`, if any.
fn applied_fields(live: &Value) -> Option<&Value> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
                && m.get("operation").and_then(Value::as_str) == Some("Apply")
                && m.get("subresource").is_none_or(Value::is_null)
        })?
        .get("fieldsV1")
}

/// Whether `live` needs `desired` applied: a field differs, is missing, or was applied by the
/// operator before and is no longer desired.
pub fn needs_apply(desired: &Value, live: &Value) -> bool {
    let mut live_fields = live.clone();
    if let Some(meta) = live_fields
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        meta.remove("managedFields");
    }
    !is_subset(desired, &live_fields)
        || applied_fields(live).is_some_and(|f| drops_owned_fields(desired, f))
}

/// Outcome of [`apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The live object already had every desired field.
    Unchanged,
    /// A patch was sent.
    Patched,
}

/// Applies `desired` (which must carry apiVersion and kind) unless `live`
/// already matches it.
pub async fn apply<K>(
    api: &Api<K>,
    name: &str,
    desired: &impl Serialize,
    live: Option<&K>,
) -> Result<Applied, kube::Error>
where
    K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    apply_at(api, name, desired, live, None).await
}

/// Like [`apply`], but the patch carries `live`'s resourceVersion, so that it lands only on
/// the version `desired` was derived from (a newer one fails with 409 Conflict and the caller
/// decides again). Without `live`, the object is created or applied as by [`apply`].
pub async fn apply_unchanged_since<K>(
    api: &Api<K>,
    name: &str,
    desired: &impl Serialize,
    live: Option<&K>,
) -> Result<Applied, kube::Error>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let resource_version = live.and_then(|l| l.meta().resource_version.clone());
    apply_at(api, name, desired, live, resource_version).await
}

/// The one apply both public functions share: `resource_version`, when given, is the
/// precondition the patch carries.
async fn apply_at<K>(
    api: &Api<K>,
    name: &str,
    desired: &impl Serialize,
    live: Option<&K>,
    resource_version: Option<String>,
) -> Result<Applied, kube::Error>
where
    K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let desired = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
    let live = live
        .map(serde_json::to_value)
        .transpose()
        .map_err(kube::Error::SerdeError)?;
    let Some(body) = patch_body(desired, live.as_ref(), resource_version) else {
        return Ok(Applied::Unchanged);
    };
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(Applied::Patched)
}

/// The patch to send for `desired`, or `None` when `live` already has it. With a `live`
/// object, `resource_version` is set in the patch's metadata so that it applies only to
/// that version; without one there is nothing to pin to.
fn patch_body(
    mut desired: Value,
    live: Option<&Value>,
    resource_version: Option<String>,
) -> Option<Value> {
    if let Some(live) = live {
        if !needs_apply(&desired, live) {
            return None;
        }
        if let (Some(meta), Some(rv)) = (
            desired.get_mut("metadata").and_then(Value::as_object_mut),
            resource_version,
        ) {
            meta.insert("resourceVersion".into(), Value::String(rv));
        }
    }
    Some(desired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_added_fields_do_not_count_as_a_change() {
        let desired = json!({"spec": {"replicas": 3, "template": {"labels": {"a": "b"}}}});
        let live = json!({"spec": {"replicas": 3, "revisionHistoryLimit": 10,
            "template": {"labels": {"a": "b", "c": "d"}}}, "status": {}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_or_missing_field_is_a_change() {
        let live = json!({"spec": {"replicas": 3, "args": ["a", "b"]}});
        assert!(!is_subset(&json!({"spec": {"replicas": 5}}), &live));
        assert!(!is_subset(&json!({"spec": {"args": ["a"]}}), &live));
        assert!(!is_subset(&json!({"spec": {"image": "x"}}), &live));
        assert!(is_subset(&json!({"spec": {"volumes": []}}), &live));
    }

    fn applied(fields: Value) -> Value {
        json!({"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": fields})
    }

    #[test]
    fn a_field_the_operator_applied_and_no_longer_wants_is_a_change() {
        // The operator applied nodeSelector {disk: ssd} and a team label; the user removed
        // both from spec.pod. The live object still has them, and so does any other manager's
        // label, which must not count.
        let live = json!({
            "metadata": {"managedFields": [
                applied(json!({"f:spec": {"f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}, "f:team": {}}},
                    "f:spec": {"f:nodeSelector": {"f:disk": {}}, "f:containers": {"k:{\"name\":\"node\"}": {}}}
                }}})),
                {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {
                    "f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/restartedAt": {}}}}}}}
            ]},
            "spec": {"template": {
                "metadata": {"labels": {"app": "x", "team": "cache"},
                             "annotations": {"kubectl.kubernetes.io/restartedAt": "now"}},
                "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "node"}]}
            }}
        });
        let unchanged = json!({"spec": {"template": {
            "metadata": {"labels": {"app": "x", "team": "cache"}},
            "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "node"}]}
        }}});
        assert!(!needs_apply(&unchanged, &live));
        let label_dropped = json!({"spec": {"template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "node"}]}
        }}});
        assert!(needs_apply(&label_dropped, &live));
        let selector_dropped = json!({"spec": {"template": {
            "metadata": {"labels": {"app": "x", "team": "cache"}},
            "spec": {"containers": [{"name": "node"}]}
        }}});
        assert!(needs_apply(&selector_dropped, &live));
        // Without the operator's managed fields, only is_subset decides.
        let mut foreign = live.clone();
        foreign["metadata"]["managedFields"] = json!([]);
        assert!(!needs_apply(&label_dropped, &foreign));
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn patch_body_pins_the_live_version_only_when_a_write_is_due() {
        let desired = json!({"metadata": {"name": "p"}, "spec": {"epoch": 2}});
        let live = json!({"metadata": {"name": "p", "resourceVersion": "7"}, "spec": {"epoch": 1}});
        let pinned = patch_body(desired.clone(), Some(&live), Some("7".into()));
        assert_eq!(
            pinned
                .as_ref()
                .and_then(|b| b["metadata"]["resourceVersion"].as_str()),
            Some("7")
        );
        let unpinned = patch_body(desired.clone(), Some(&live), None);
        assert_eq!(unpinned, Some(desired.clone()));
        let current =
            json!({"metadata": {"name": "p", "resourceVersion": "8"}, "spec": {"epoch": 2}});
        assert_eq!(
            patch_body(desired.clone(), Some(&current), Some("8".into())),
            None
        );
        // Nothing live yet: a create, with no version to pin to.
        assert_eq!(
            patch_body(desired.clone(), None, Some("9".into())),
            Some(desired)
        );
    }

    proptest::proptest! {
        #[test]
        fn every_object_is_a_subset_of_itself(v in json_value()) {
            proptest::prop_assert!(is_subset(&v, &v));
        }

        #[test]
        fn adding_a_field_to_the_live_object_is_not_a_change(v in json_value(), extra in json_value()) {
            let desired = json!({"spec": v});
            let mut live = desired.clone();
            live["status"] = extra;
            proptest::prop_assert!(is_subset(&desired, &live));
        }
    }
}
