//! Server-side apply with a stable field manager, skipping writes that would
//! change nothing.

use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::desired::names::FIELD_MANAGER;

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
    let desired = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
    if let Some(live) = live {
        let live = serde_json::to_value(live).map_err(kube::Error::SerdeError)?;
        if is_subset(&desired, &live) {
            return Ok(Applied::Unchanged);
        }
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await?;
    Ok(Applied::Patched)
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
