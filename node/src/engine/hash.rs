//! Hash write commands as pure functions: from the current values of the fields a command
//! touches to the fields' post-images, the change in field count and the reply. The writer
//! (`writer::collections`) reads the fields, applies the effect as logged element writes plus
//! the metadata record, and answers.

use super::collection::Effect;
use super::ops::DataReply;
use super::strings::{self, Change, StrCmd};
use crate::keys::Stored;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HSetMode {
    /// HSET: answers the number of new fields.
    Count,
    /// HMSET: answers OK.
    Ok,
    /// HSETNX: sets only an absent field, answers 1 or 0.
    Nx,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashCmd {
    Set {
        key: Vec<u8>,
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        mode: HSetMode,
    },
    Del {
        key: Vec<u8>,
        fields: Vec<Vec<u8>>,
    },
    IncrBy {
        key: Vec<u8>,
        field: Vec<u8>,
        delta: i64,
    },
    /// The increment as given (checked to be a float by the parser).
    IncrByFloat {
        key: Vec<u8>,
        field: Vec<u8>,
        delta: Vec<u8>,
    },
}

impl HashCmd {
    pub fn key(&self) -> &[u8] {
        match self {
            HashCmd::Set { key, .. }
            | HashCmd::Del { key, .. }
            | HashCmd::IncrBy { key, .. }
            | HashCmd::IncrByFloat { key, .. } => key,
        }
    }

    /// The fields whose current values `eval` needs, in the order it takes them.
    pub fn fields(&self) -> Vec<&[u8]> {
        match self {
            HashCmd::Set { pairs, .. } => pairs.iter().map(|(f, _)| f.as_slice()).collect(),
            HashCmd::Del { fields, .. } => fields.iter().map(Vec::as_slice).collect(),
            HashCmd::IncrBy { field, .. } | HashCmd::IncrByFloat { field, .. } => vec![field],
        }
    }
}

/// Evaluates `cmd` given the current values of `cmd.fields()` (None = absent field).
pub fn eval(cmd: HashCmd, current: Vec<Option<Vec<u8>>>) -> Effect {
    match cmd {
        HashCmd::Set { pairs, mode, .. } => {
            let mut e = Effect::default();
            // A field named twice counts once and keeps the last value. (One pair, the
            // common case, needs no map.)
            let several = pairs.len() > 1;
            let mut seen: std::collections::HashMap<Vec<u8>, usize> = Default::default();
            for ((field, value), cur) in pairs.into_iter().zip(current) {
                if let Some(&i) = seen.get(&field) {
                    if mode != HSetMode::Nx {
                        e.subs[i].1 = Some(value);
                    }
                    continue;
                }
                if mode == HSetMode::Nx && cur.is_some() {
                    return Effect::only(DataReply::Int(0));
                }
                if cur.is_none() {
                    e.added += 1;
                }
                if several {
                    seen.insert(field.clone(), e.subs.len());
                }
                e.subs.push((field, Some(value)));
            }
            e.reply = Some(match mode {
                HSetMode::Count => DataReply::Int(e.added),
                HSetMode::Ok => DataReply::Ok,
                HSetMode::Nx => DataReply::Int(1),
            });
            e
        }
        HashCmd::Del { fields, .. } => {
            let mut e = Effect::default();
            let mut seen = std::collections::HashSet::new();
            for (field, cur) in fields.into_iter().zip(current) {
                if cur.is_some() && seen.insert(field.clone()) {
                    e.added -= 1;
                    e.subs.push((field, None));
                }
            }
            e.reply = Some(DataReply::Int(-e.added));
            e
        }
        HashCmd::IncrBy { field, delta, .. } => {
            let cur = current.into_iter().next().flatten();
            let old = match &cur {
                None => 0,
                Some(v) => match super::writer_parse_int(v) {
                    Some(n) => n,
                    None => {
                        return Effect::only(DataReply::Err(
                            "ERR hash value is not an integer".into(),
                        ));
                    }
                },
            };
            let Some(n) = old.checked_add(delta) else {
                return Effect::only(DataReply::Err(
                    "ERR increment or decrement would overflow".into(),
                ));
            };
            Effect {
                added: i64::from(cur.is_none()),
                subs: vec![(field, Some(n.to_string().into_bytes()))],
                reply: Some(DataReply::Int(n)),
                ..Effect::default()
            }
        }
        HashCmd::IncrByFloat { field, delta, .. } => {
            let cur = current.into_iter().next().flatten();
            let absent = cur.is_none();
            if cur
                .as_deref()
                .is_some_and(|v| strings::parse_float(v).is_none())
            {
                return Effect::only(DataReply::Err("ERR hash value is not a float".into()));
            }
            // The same arithmetic and formatting as INCRBYFLOAT.
            let old = cur.map(|v| Stored::string(v, None));
            match strings::eval(StrCmd::IncrByFloat { key: vec![], delta }, old, 0) {
                (Change::Put(s), reply) => Effect {
                    added: i64::from(absent),
                    subs: vec![(field, Some(s.value))],
                    reply: Some(reply),
                    ..Effect::default()
                },
                (_, reply) => Effect::only(reply),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn hset_counts_new_fields_once_and_keeps_the_last_value() {
        let e = eval(
            HashCmd::Set {
                key: b("h"),
                pairs: vec![(b("a"), b("1")), (b("b"), b("2")), (b("a"), b("3"))],
                mode: HSetMode::Count,
            },
            vec![None, Some(b("x")), None],
        );
        assert_eq!(e.added, 1);
        assert_eq!(e.subs, vec![(b("a"), Some(b("3"))), (b("b"), Some(b("2")))]);
        assert_eq!(e.reply, Some(DataReply::Int(1)));
    }

    #[test]
    fn hsetnx_leaves_an_existing_field() {
        let cmd = |cur| {
            eval(
                HashCmd::Set {
                    key: b("h"),
                    pairs: vec![(b("a"), b("1"))],
                    mode: HSetMode::Nx,
                },
                vec![cur],
            )
        };
        let e = cmd(Some(b("old")));
        assert!(e.subs.is_empty());
        assert_eq!(e.reply, Some(DataReply::Int(0)));
        let e = cmd(None);
        assert_eq!(e.added, 1);
        assert_eq!(e.reply, Some(DataReply::Int(1)));
    }

    #[test]
    fn hdel_counts_present_fields_once() {
        let e = eval(
            HashCmd::Del {
                key: b("h"),
                fields: vec![b("a"), b("a"), b("z")],
            },
            vec![Some(b("1")), Some(b("1")), None],
        );
        assert_eq!(e.added, -1);
        assert_eq!(e.subs, vec![(b("a"), None)]);
        assert_eq!(e.reply, Some(DataReply::Int(1)));
    }

    #[test]
    fn hincrby_refuses_non_integers_and_overflow() {
        let cmd = |cur: Option<Vec<u8>>, delta| {
            eval(
                HashCmd::IncrBy {
                    key: b("h"),
                    field: b("f"),
                    delta,
                },
                vec![cur],
            )
        };
        assert_eq!(
            cmd(Some(b("x")), 1).reply,
            Some(DataReply::Err("ERR hash value is not an integer".into()))
        );
        assert!(
            cmd(Some(i64::MAX.to_string().into_bytes()), 1)
                .subs
                .is_empty()
        );
        let e = cmd(Some(b("41")), 1);
        assert_eq!(e.subs, vec![(b("f"), Some(b("42")))]);
        assert_eq!(e.added, 0);
        assert_eq!(cmd(None, -3).added, 1);
    }

    #[test]
    fn hincrbyfloat_formats_like_incrbyfloat() {
        let e = eval(
            HashCmd::IncrByFloat {
                key: b("h"),
                field: b("f"),
                delta: b("0.1"),
            },
            vec![Some(b("10.5"))],
        );
        assert_eq!(e.subs, vec![(b("f"), Some(b("10.6")))]);
        assert_eq!(e.reply, Some(DataReply::Bulk(b("10.6"))));
        let e = eval(
            HashCmd::IncrByFloat {
                key: b("h"),
                field: b("f"),
                delta: b("1"),
            },
            vec![Some(b("abc"))],
        );
        assert_eq!(
            e.reply,
            Some(DataReply::Err("ERR hash value is not a float".into()))
        );
    }
}
