use kiln_federated::{FederatedError, Partition};
use std::collections::HashSet;

/// 10 classes of 60 examples, in an interleaved order.
fn labels() -> Vec<usize> {
    (0..600).map(|i| i % 10).collect()
}

fn assert_disjoint_cover(p: &Partition, n: usize) {
    let mut seen = HashSet::new();
    for c in p.clients() {
        for &i in c {
            assert!(i < n, "index {i} outside {n}");
            assert!(seen.insert(i), "index {i} given twice");
        }
    }
    assert_eq!(seen.len(), n, "the clients do not cover the examples");
}

#[test]
fn iid_shards_are_disjoint_equal_and_cover() {
    let p = Partition::iid(1003, 10, 1).expect("partition");
    assert_eq!(p.len(), 10);
    assert_disjoint_cover(&p, 1003);
    let sizes: Vec<usize> = p.clients().iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().filter(|&&s| s == 101).count(), 3);
    assert_eq!(sizes.iter().filter(|&&s| s == 100).count(), 7);
    assert_eq!(p, Partition::iid(1003, 10, 1).expect("partition"));
    assert_ne!(p, Partition::iid(1003, 10, 2).expect("partition"));
}

#[test]
fn pathological_shards_give_each_client_two_labels() {
    let labels = labels();
    // 20 shards of 30 over labels sorted into runs of 60: every shard holds one label.
    let p = Partition::pathological_non_iid(&labels, 10, 2, 3).expect("partition");
    assert_disjoint_cover(&p, 600);
    for (c, counts) in p.label_counts(&labels, 10).iter().enumerate() {
        assert_eq!(counts.iter().sum::<usize>(), 60, "client {c}");
        let present: Vec<usize> = counts.iter().copied().filter(|&k| k > 0).collect();
        assert!(present.len() <= 2, "client {c} sees {counts:?}");
        assert!(
            present.iter().all(|k| k % 30 == 0),
            "client {c}: {counts:?}"
        );
    }
    // With more shards than one label fills, a shard may straddle two labels, never more.
    let p = Partition::pathological_non_iid(&labels, 100, 2, 3).expect("partition");
    assert_eq!(p.clients().iter().map(Vec::len).sum::<usize>(), 600);
    assert!(
        p.label_counts(&labels, 10)
            .iter()
            .all(|c| c.iter().filter(|&&k| k > 0).count() <= 4)
    );
}

#[test]
fn dirichlet_skew_follows_alpha() {
    let labels: Vec<usize> = (0..5000).map(|i| i % 10).collect();
    let classes_seen = |alpha: f64| -> f64 {
        let p = Partition::dirichlet(&labels, 20, alpha, 1, 4).expect("partition");
        assert_disjoint_cover(&p, 5000);
        let counts = p.label_counts(&labels, 10);
        // Every class is shared out whole.
        for class in 0..10 {
            assert_eq!(counts.iter().map(|c| c[class]).sum::<usize>(), 500);
        }
        // Mean share of a client's examples in its largest class.
        counts
            .iter()
            .map(|c| *c.iter().max().unwrap_or(&0) as f64 / c.iter().sum::<usize>() as f64)
            .sum::<f64>()
            / 20.0
    };
    let near_iid = classes_seen(1000.0);
    let skewed = classes_seen(0.1);
    assert!(near_iid < 0.2, "α = 1000: largest class share {near_iid}");
    assert!(skewed > 0.6, "α = 0.1: largest class share {skewed}");
}

#[test]
fn unbalanced_sizes_spread_and_cover() {
    let p = Partition::unbalanced(6000, 50, 1.0, 5).expect("partition");
    assert_disjoint_cover(&p, 6000);
    let sizes: Vec<usize> = p.clients().iter().map(Vec::len).collect();
    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!(*min >= 1);
    assert!(max / min.max(&1) >= 5, "sizes {min}..{max} barely differ");
}

#[test]
fn bad_partitions_are_refused_by_name() {
    let labels = labels();
    let message = |r: Result<Partition, FederatedError>| r.expect_err("refused").to_string();
    assert!(message(Partition::iid(5, 10, 1)).contains("5 examples"));
    assert!(message(Partition::iid(5, 0, 1)).contains("clients"));
    assert!(
        message(Partition::pathological_non_iid(&labels, 10, 0, 1)).contains("shards_per_client")
    );
    assert!(message(Partition::pathological_non_iid(&labels[..10], 10, 2, 1)).contains("shards"));
    assert!(message(Partition::dirichlet(&labels, 10, 0.0, 1, 1)).contains("alpha"));
    assert!(message(Partition::dirichlet(&labels, 10, f64::NAN, 1, 1)).contains("alpha"));
    assert!(message(Partition::unbalanced(100, 10, -1.0, 1)).contains("sigma"));
    assert!(message(Partition::from_clients(vec![vec![0, 1], vec![1]])).contains("example 1"));
    assert!(message(Partition::from_clients(vec![vec![0], vec![]])).contains("client 1"));
}
