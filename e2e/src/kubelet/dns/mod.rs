//! Cluster DNS: the kubelet answers `cluster.local` names on the `kube-system/kube-dns`
//! Service's address (UDP and TCP port 53) from the Services and Pods it watches.

pub mod answer;
pub mod codec;
mod server;

pub use server::{ensure_service, run};

use k8s_openapi::api::core::v1::{Pod, Service};

use answer::Lookup;
use codec::{CLASS_IN, Rcode, TYPE_A, TYPE_ANY};

/// Record TTL: short, since pods come and go.
const TTL: u32 = 5;

/// The response to the message `buf` (None: not a query, or too broken to answer at all).
/// `limit` is the UDP size limit (None over TCP).
pub fn respond(
    buf: &[u8],
    services: &[&Service],
    pods: &[&Pod],
    limit: Option<usize>,
) -> Option<Vec<u8>> {
    let query = match codec::parse_query(buf) {
        Ok(q) => q,
        Err(_) => {
            let id = codec::peek_id(buf)?;
            return Some(codec::encode_response(
                id,
                0,
                false,
                Rcode::FormErr,
                None,
                &[],
                TTL,
                limit,
            ));
        }
    };
    if query.is_response {
        return None;
    }
    let reply = |rcode, q, addrs: &[std::net::Ipv4Addr]| {
        Some(codec::encode_response(
            query.id,
            query.opcode,
            query.recursion_desired,
            rcode,
            q,
            addrs,
            TTL,
            limit,
        ))
    };
    if query.opcode != 0 {
        return reply(Rcode::NotImp, None, &[]);
    }
    let [q] = query.questions.as_slice() else {
        return reply(Rcode::FormErr, None, &[]);
    };
    if q.qclass != CLASS_IN && q.qclass != TYPE_ANY {
        return reply(Rcode::Refused, Some(q), &[]);
    }
    let want_a = q.qtype == TYPE_A || q.qtype == TYPE_ANY;
    match answer::lookup(&q.name(), want_a, services, pods) {
        Lookup::Found(addrs) => reply(Rcode::NoError, Some(q), &addrs),
        Lookup::NxDomain => reply(Rcode::NxDomain, Some(q), &[]),
        Lookup::Refused => reply(Rcode::Refused, Some(q), &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(name: &str, qtype: u16, opcode: u8) -> Vec<u8> {
        let mut b = vec![0x12, 0x34, opcode << 3 | 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            b.push(l.len() as u8);
            b.extend(l.as_bytes());
        }
        b.extend([0, 0, qtype as u8, 0, 1]);
        b
    }

    fn rcode(r: &[u8]) -> u8 {
        r[3] & 0x0f
    }

    #[test]
    fn answers_services_refuses_the_outside_and_rejects_garbage() {
        let web: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "127.15.3.4"}
        }))
        .unwrap();
        let services = [&web];
        let r = respond(
            &query("web.shop.svc.cluster.local", 1, 0),
            &services,
            &[],
            None,
        )
        .unwrap();
        assert_eq!((rcode(&r), &r[..2]), (0, &[0x12, 0x34][..]));
        assert_eq!(&r[r.len() - 4..], &[127, 15, 3, 4]);
        let r = respond(
            &query("web.shop.svc.cluster.local", 28, 0),
            &services,
            &[],
            None,
        )
        .unwrap();
        assert_eq!((rcode(&r), &r[6..8]), (0, &[0, 0][..]), "AAAA: NODATA");
        let r = respond(
            &query("db.shop.svc.cluster.local", 1, 0),
            &services,
            &[],
            None,
        )
        .unwrap();
        assert_eq!(rcode(&r), 3);
        let r = respond(&query("example.com", 1, 0), &services, &[], None).unwrap();
        assert_eq!(rcode(&r), 5);
        let r = respond(
            &query("web.shop.svc.cluster.local", 1, 2),
            &services,
            &[],
            None,
        )
        .unwrap();
        assert_eq!(rcode(&r), 4, "STATUS opcode: NOTIMP");
        let r = respond(&[0x12, 0x34, 1, 0, 0, 1, 0], &services, &[], None).unwrap();
        assert_eq!((rcode(&r), &r[..2]), (1, &[0x12, 0x34][..]));
        assert_eq!(respond(&[0x12], &services, &[], None), None);
        // A response is never answered (no loops between servers).
        let mut resp = query("web.shop.svc.cluster.local", 1, 0);
        resp[2] |= 0x80;
        assert_eq!(respond(&resp, &services, &[], None), None);
    }
}
