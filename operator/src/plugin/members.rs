//! `drain`, `undrain` and `reweight`: pure edits of `spec.members`, the list the operator reads
//! a member's weight and drain flag from. A member the list does not name has the default
//! weight and is not drained, so an edit that brings a member back to that removes its entry.

use crate::cluster::desired::names;
use crate::cluster::validate::MAX_WEIGHT;
use crate::crd::{DEFAULT_WEIGHT, MemberSpec};

/// One edit of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Drain,
    Undrain,
    Reweight(i32),
}

/// Why an edit cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error(
        "{given:?} is not a member of {cluster} (members are {cluster}-0 .. {cluster}-{last}; an ordinal works too)"
    )]
    NoSuchMember {
        cluster: String,
        given: String,
        last: i32,
    },
    #[error("weight {0} is out of range 0..={MAX_WEIGHT}")]
    Weight(i32),
}

/// The member's name for `given`: a member name (`demo-2`) or an ordinal (`2`).
pub fn resolve(cluster: &str, replicas: i32, given: &str) -> Result<String, EditError> {
    let name = if given.bytes().all(|b| b.is_ascii_digit()) && !given.is_empty() {
        format!("{cluster}-{given}")
    } else {
        given.to_string()
    };
    match names::ordinal(cluster, &name) {
        Some(o) if (0..replicas).contains(&o) => Ok(name),
        _ => Err(EditError::NoSuchMember {
            cluster: cluster.to_string(),
            given: given.to_string(),
            last: replicas - 1,
        }),
    }
}

/// `members` with `edit` applied to `member`; the second value says whether anything changed.
pub fn apply(
    members: &[MemberSpec],
    member: &str,
    edit: Edit,
) -> Result<(Vec<MemberSpec>, bool), EditError> {
    if let Edit::Reweight(w) = edit
        && !(0..=MAX_WEIGHT).contains(&w)
    {
        return Err(EditError::Weight(w));
    }
    let mut out = members.to_vec();
    let idx = match out.iter().position(|m| m.name == member) {
        Some(i) => i,
        None => {
            out.push(MemberSpec {
                name: member.to_string(),
                weight: DEFAULT_WEIGHT,
                drain: false,
            });
            out.len() - 1
        }
    };
    let m = &mut out[idx];
    match edit {
        Edit::Drain => m.drain = true,
        Edit::Undrain => m.drain = false,
        Edit::Reweight(w) => m.weight = w,
    }
    if !m.drain && m.weight == DEFAULT_WEIGHT {
        out.remove(idx);
    }
    let changed = out != members;
    Ok((out, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, weight: i32, drain: bool) -> MemberSpec {
        MemberSpec {
            name: name.into(),
            weight,
            drain,
        }
    }

    #[test]
    fn members_are_named_or_numbered() {
        assert_eq!(resolve("demo", 3, "2").unwrap(), "demo-2");
        assert_eq!(resolve("demo", 3, "demo-0").unwrap(), "demo-0");
        let e = resolve("demo", 3, "3").unwrap_err();
        assert!(e.to_string().contains("demo-0 .. demo-2"), "{e}");
        assert!(resolve("demo", 3, "other-1").is_err());
        assert!(resolve("demo", 3, "").is_err());
        assert!(resolve("demo", 3, "demo-01").is_err());
    }

    #[test]
    fn drain_adds_an_entry_and_undrain_removes_it_again() {
        let (after, changed) = apply(&[], "demo-1", Edit::Drain).unwrap();
        assert!(changed);
        assert_eq!(after, vec![m("demo-1", DEFAULT_WEIGHT, true)]);
        let (back, changed) = apply(&after, "demo-1", Edit::Undrain).unwrap();
        assert!(changed);
        assert!(back.is_empty(), "a default member needs no entry");
    }

    #[test]
    fn edits_keep_the_other_fields_and_members() {
        let start = vec![m("demo-0", 300, false), m("demo-1", 50, false)];
        let (after, _) = apply(&start, "demo-1", Edit::Drain).unwrap();
        assert_eq!(after, vec![m("demo-0", 300, false), m("demo-1", 50, true)]);
        let (after, _) = apply(&after, "demo-1", Edit::Undrain).unwrap();
        assert_eq!(after, start, "a non-default weight keeps its entry");
        let (after, _) = apply(&start, "demo-0", Edit::Reweight(DEFAULT_WEIGHT)).unwrap();
        assert_eq!(after, vec![m("demo-1", 50, false)]);
    }

    #[test]
    fn repeating_an_edit_changes_nothing() {
        let start = vec![m("demo-2", DEFAULT_WEIGHT, true)];
        let (after, changed) = apply(&start, "demo-2", Edit::Drain).unwrap();
        assert!(!changed);
        assert_eq!(after, start);
        let (_, changed) = apply(&[], "demo-2", Edit::Undrain).unwrap();
        assert!(!changed);
    }

    #[test]
    fn weights_out_of_range_are_refused() {
        assert_eq!(
            apply(&[], "demo-0", Edit::Reweight(-1)),
            Err(EditError::Weight(-1))
        );
        assert!(apply(&[], "demo-0", Edit::Reweight(MAX_WEIGHT + 1)).is_err());
        assert!(apply(&[], "demo-0", Edit::Reweight(0)).is_ok());
    }
}
