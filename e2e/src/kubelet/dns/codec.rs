//! The DNS message subset the cluster DNS server needs (RFC 1035): reading a query (names with
//! compression pointers) and writing a response with A records. Malformed input is an error,
//! never a panic.

use std::net::Ipv4Addr;

pub const TYPE_A: u16 = 1;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
const HEADER_LEN: usize = 12;
/// Longest name on the wire (RFC 1035 2.3.4).
const MAX_NAME: usize = 255;
/// Largest UDP answer without EDNS; longer ones are truncated (TC) so the client retries on TCP.
pub const UDP_LIMIT: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("message shorter than its header")]
    ShortHeader,
    #[error("message ends inside a {0}")]
    Truncated(&'static str),
    #[error("label type {0:#04x} is not supported")]
    LabelType(u8),
    #[error("compression pointer loops or points forward")]
    BadPointer,
    #[error("name longer than 255 bytes")]
    NameTooLong,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Labels as sent (case kept; compare case-insensitively).
    pub labels: Vec<Vec<u8>>,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    /// The name in dotted form, lower case, without the trailing dot.
    pub fn name(&self) -> String {
        self.labels
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// A parsed query: the header fields a response echoes and its questions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub opcode: u8,
    pub recursion_desired: bool,
    /// Set when the message is a response, which a server must not answer.
    pub is_response: bool,
    pub questions: Vec<Question>,
}

fn u16_at(buf: &[u8], pos: usize, what: &'static str) -> Result<u16, DnsError> {
    match buf.get(pos..pos + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(DnsError::Truncated(what)),
    }
}

/// Reads the name at `pos`; returns it and the position after it (after the first pointer
/// when the name is compressed). Pointers must point backwards, which also rules out loops.
pub fn read_name(buf: &[u8], mut pos: usize) -> Result<(Vec<Vec<u8>>, usize), DnsError> {
    let mut labels = vec![];
    let mut wire_len = 1; // the root label
    let mut end: Option<usize> = None;
    loop {
        let len = *buf.get(pos).ok_or(DnsError::Truncated("name"))?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok((labels, end.unwrap_or(pos + 1)));
                }
                let start = pos + 1;
                let label = buf
                    .get(start..start + len as usize)
                    .ok_or(DnsError::Truncated("label"))?;
                wire_len += 1 + len as usize;
                if wire_len > MAX_NAME {
                    return Err(DnsError::NameTooLong);
                }
                labels.push(label.to_vec());
                pos = start + len as usize;
            }
            0xc0 => {
                let target = (u16_at(buf, pos, "pointer")? & 0x3fff) as usize;
                if target >= pos {
                    return Err(DnsError::BadPointer);
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            other => return Err(DnsError::LabelType(other)),
        }
    }
}

/// Parses a query's header and question section (answer, authority and additional sections,
/// e.g. an EDNS OPT record, are ignored).
pub fn parse_query(buf: &[u8]) -> Result<Query, DnsError> {
    if buf.len() < HEADER_LEN {
        return Err(DnsError::ShortHeader);
    }
    let id = u16_at(buf, 0, "header")?;
    let flags = u16_at(buf, 2, "header")?;
    let qdcount = u16_at(buf, 4, "header")?;
    let mut pos = HEADER_LEN;
    let mut questions = vec![];
    for _ in 0..qdcount {
        let (labels, next) = read_name(buf, pos)?;
        let qtype = u16_at(buf, next, "question")?;
        let qclass = u16_at(buf, next + 2, "question")?;
        pos = next + 4;
        questions.push(Question {
            labels,
            qtype,
            qclass,
        });
    }
    Ok(Query {
        id,
        opcode: ((flags >> 11) & 0x0f) as u8,
        recursion_desired: flags & 0x0100 != 0,
        is_response: flags & 0x8000 != 0,
        questions,
    })
}

/// The id of a message too broken to parse, so that FORMERR can still reach the right query.
pub fn peek_id(buf: &[u8]) -> Option<u16> {
    u16_at(buf, 0, "header").ok()
}

/// A response to `id`: authoritative, echoing `question` (when there is one) with one A record
/// per address, `ttl` seconds. Over UDP (`limit` = [`UDP_LIMIT`]) an answer that does not fit
/// is sent without records and with TC set.
#[allow(clippy::too_many_arguments)]
pub fn encode_response(
    id: u16,
    opcode: u8,
    recursion_desired: bool,
    rcode: Rcode,
    question: Option<&Question>,
    addresses: &[Ipv4Addr],
    ttl: u32,
    limit: Option<usize>,
) -> Vec<u8> {
    let build = |addresses: &[Ipv4Addr], truncated: bool| {
        let mut flags: u16 = 0x8000 | (u16::from(opcode & 0x0f) << 11) | 0x0400; // QR, AA
        if truncated {
            flags |= 0x0200;
        }
        if recursion_desired {
            flags |= 0x0100;
        }
        flags |= rcode as u16;
        let mut out = Vec::with_capacity(64 + 16 * addresses.len());
        out.extend(id.to_be_bytes());
        out.extend(flags.to_be_bytes());
        out.extend(u16::from(question.is_some()).to_be_bytes());
        let answers = if question.is_some() {
            addresses.len()
        } else {
            0
        };
        out.extend((answers as u16).to_be_bytes());
        out.extend([0, 0, 0, 0]); // no authority, no additional records
        if let Some(q) = question {
            for l in &q.labels {
                out.push(l.len() as u8);
                out.extend(l);
            }
            out.push(0);
            out.extend(q.qtype.to_be_bytes());
            out.extend(q.qclass.to_be_bytes());
            for a in addresses.iter().take(answers) {
                out.extend([0xc0, HEADER_LEN as u8]); // the question's name
                out.extend(TYPE_A.to_be_bytes());
                out.extend(CLASS_IN.to_be_bytes());
                out.extend(ttl.to_be_bytes());
                out.extend(4u16.to_be_bytes());
                out.extend(a.octets());
            }
        }
        out
    };
    let full = build(addresses, false);
    match limit {
        Some(max) if full.len() > max => build(&[], true),
        _ => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A query as glibc sends it: id, RD, one question.
    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut b = vec![];
        b.extend(id.to_be_bytes());
        b.extend(0x0100u16.to_be_bytes());
        b.extend([0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.') {
            b.push(l.len() as u8);
            b.extend(l.as_bytes());
        }
        b.push(0);
        b.extend(qtype.to_be_bytes());
        b.extend(CLASS_IN.to_be_bytes());
        b
    }

    #[test]
    fn parses_a_plain_query() {
        let q = parse_query(&query(0xbeef, "Web.Shop.svc.cluster.local", TYPE_A)).unwrap();
        assert_eq!(q.id, 0xbeef);
        assert_eq!(q.opcode, 0);
        assert!(q.recursion_desired);
        assert!(!q.is_response);
        assert_eq!(q.questions.len(), 1);
        assert_eq!(q.questions[0].name(), "web.shop.svc.cluster.local");
        assert_eq!(q.questions[0].qtype, TYPE_A);
    }

    #[test]
    fn follows_compression_pointers() {
        // Two questions; the second is "www" + pointer to the first name at offset 12.
        let mut b = query(1, "example.cluster.local", TYPE_A);
        b[5] = 2;
        b.extend([3, b'w', b'w', b'w', 0xc0, 12]);
        b.extend(TYPE_A.to_be_bytes());
        b.extend(CLASS_IN.to_be_bytes());
        let q = parse_query(&b).unwrap();
        assert_eq!(q.questions[1].name(), "www.example.cluster.local");
    }

    #[test]
    fn rejects_malformed_messages() {
        assert_eq!(parse_query(&[0; 5]), Err(DnsError::ShortHeader));
        let full = query(1, "a.b", TYPE_A);
        assert_eq!(
            parse_query(&full[..full.len() - 2]),
            Err(DnsError::Truncated("question"))
        );
        // A label running past the end.
        let mut b = query(1, "a", TYPE_A);
        b.truncate(12);
        b.extend([9, b'x']);
        assert_eq!(parse_query(&b), Err(DnsError::Truncated("label")));
        // A pointer to itself (a loop) and a forward pointer.
        let mut b = query(1, "a", TYPE_A);
        b.truncate(12);
        b.extend([0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_query(&b), Err(DnsError::BadPointer));
        // Extended label types (0x40) are not supported.
        let mut b = query(1, "a", TYPE_A);
        b[12] = 0x41;
        assert_eq!(parse_query(&b), Err(DnsError::LabelType(0x40)));
        // More than 255 bytes of name.
        let long = vec!["a".repeat(63); 5].join(".");
        assert_eq!(
            parse_query(&query(1, &long, TYPE_A)),
            Err(DnsError::NameTooLong)
        );
    }

    #[test]
    fn response_echoes_the_question_and_carries_a_records() {
        let q = parse_query(&query(7, "web.shop.svc.cluster.local", TYPE_A)).unwrap();
        let ip = Ipv4Addr::new(127, 15, 3, 4);
        let r = encode_response(
            7,
            0,
            true,
            Rcode::NoError,
            Some(&q.questions[0]),
            &[ip],
            5,
            None,
        );
        // The response parses as a message with the same question...
        let back = parse_query(&r).unwrap();
        assert!(back.is_response);
        assert_eq!(back.id, 7);
        assert_eq!(back.questions, q.questions);
        // ...flags QR AA RD with rcode 0, one answer, and the record's address at the end.
        assert_eq!(&r[2..4], &[0x85, 0x00]);
        assert_eq!(&r[6..8], &[0, 1]);
        assert_eq!(&r[r.len() - 4..], &ip.octets());
        let answer_start = 12 + 28 + 4;
        assert_eq!(&r[answer_start..answer_start + 2], &[0xc0, 12]);
    }

    #[test]
    fn rcode_and_truncation() {
        let q = parse_query(&query(9, "x.cluster.local", TYPE_A)).unwrap();
        let r = encode_response(
            9,
            0,
            false,
            Rcode::NxDomain,
            Some(&q.questions[0]),
            &[],
            5,
            None,
        );
        assert_eq!(r[3] & 0x0f, 3);
        let many: Vec<Ipv4Addr> = (0..40).map(|i| Ipv4Addr::new(127, 8, 0, i)).collect();
        let r = encode_response(
            9,
            0,
            false,
            Rcode::NoError,
            Some(&q.questions[0]),
            &many,
            5,
            Some(UDP_LIMIT),
        );
        assert!(r.len() <= UDP_LIMIT);
        assert_eq!(r[2] & 0x02, 0x02, "TC set");
        assert_eq!(&r[6..8], &[0, 0]);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_query(&bytes);
        }

        #[test]
        fn names_round_trip(labels in proptest::collection::vec("[a-z0-9-]{1,20}", 1..6)) {
            let name = labels.join(".");
            let q = parse_query(&query(3, &name, TYPE_A)).unwrap();
            prop_assert_eq!(q.questions[0].name(), name);
        }
    }
}
