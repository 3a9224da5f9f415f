//! Every transfer's ranges are owned by its source at every step of a change, through
//! scale-outs, scale-ins and re-plans (the source must be able to fence them).

use ringshift_ring::{Member, Placement, RangeSet, RingSpec};

fn members(n: u32) -> Vec<Member> {
    (0..n)
        .map(|i| Member::new(format!("demo-{i}"), 100))
        .collect()
}

fn check(p: &Placement) {
    let cur = p.current().unwrap();
    for t in p.pending_transfers().unwrap() {
        let owned = cur.ranges_of(&t.source);
        for r in t.ranges.iter() {
            let inter = owned.intersection(&RangeSet::new([*r]).unwrap());
            assert_eq!(
                inter.span(),
                r.span(),
                "epoch {}: {} -> {} range {}-{} not (fully) owned by the source",
                p.epoch(),
                t.source,
                t.target,
                r.start,
                r.end
            );
        }
    }
}

#[test]
fn scale_3_5_2_sources_own_what_they_send() {
    for vnodes in [16u16, 32, 64] {
        let base = RingSpec::with_members(vnodes, &members(3)).unwrap();
        let mut p = Placement::new("uid", base.clone()).unwrap();
        let mut spec = base;
        for n in [5u32, 2, 4, 1, 3] {
            spec = spec.evolve(&members(n)).unwrap();
            p = p.set_target(spec.clone()).unwrap();
            check(&p);
            while let Some(t) = p.pending_transfers().unwrap().into_iter().next() {
                p = p.commit(&t.source, &t.target).unwrap();
                check(&p);
            }
            assert!(p.is_balanced());
        }
    }
}
