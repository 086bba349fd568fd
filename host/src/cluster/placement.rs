//! Which instance should own a server: rendezvous (highest random weight) hashing over the
//! live instances. Every instance computes the same order from the same membership, so they
//! agree without talking; when an instance joins or leaves, only the servers it ranks first
//! for move, and they spread evenly.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

/// `members` ordered by preference for `server`: the first should own it.
pub fn ranked<'a>(server: &str, members: &'a [String]) -> Vec<&'a str> {
    let mut scored: Vec<(u64, &str)> = members
        .iter()
        .map(|m| (weight(server, m), m.as_str()))
        .collect();
    // Highest weight first; the name breaks a (vanishingly rare) tie the same everywhere.
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    scored.into_iter().map(|(_, m)| m).collect()
}

/// Where `instance` stands for `server` (0: first), if it is a member.
pub fn rank(server: &str, instance: &str, members: &[String]) -> Option<usize> {
    ranked(server, members).iter().position(|m| *m == instance)
}

fn weight(server: &str, instance: &str) -> u64 {
    // Fixed keys: every instance, every release, computes the same weights.
    let mut h = SipHasher13::new_with_keys(0x6661_6374_6f72_696f, 0x6973_722d_6861_7368);
    h.write(server.as_bytes());
    h.write_u8(0xff);
    h.write(instance.as_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("isr-{i}")).collect()
    }

    #[test]
    fn every_instance_agrees_and_servers_spread() {
        let m = members(3);
        let mut shuffled = m.clone();
        shuffled.reverse();
        let mut first = std::collections::BTreeMap::<&str, usize>::new();
        for s in 0..300 {
            let server = format!("server-{s}");
            let a = ranked(&server, &m);
            assert_eq!(
                a,
                ranked(&server, &shuffled),
                "the order of the list does not matter"
            );
            *first.entry(a[0]).or_default() += 1;
        }
        for (_, n) in first {
            assert!((70..=130).contains(&n), "{n} of 300: uneven");
        }
    }

    #[test]
    fn only_the_servers_of_an_instance_that_leaves_move() {
        let all = members(3);
        let without: Vec<String> = all.iter().filter(|m| *m != "isr-1").cloned().collect();
        for s in 0..200 {
            let server = format!("s{s}");
            let before = ranked(&server, &all)[0];
            let after = ranked(&server, &without)[0];
            if before != "isr-1" {
                assert_eq!(before, after, "{server} moved though its owner stayed");
            }
        }
        assert_eq!(rank("x", "isr-9", &all), None);
    }
}
