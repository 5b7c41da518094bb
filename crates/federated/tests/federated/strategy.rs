use kiln_federated::{ClientUpdate, DpFedAvg, FedAdaptive, FedAvg, Median, Strategy, TrimmedMean};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn update(client: usize, examples: usize, delta: &[f32]) -> ClientUpdate {
    ClientUpdate {
        client,
        examples,
        delta: delta.to_vec(),
    }
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(9)
}

#[test]
fn fedavg_weights_updates_by_client_size() {
    let global = [1.0, -2.0, 0.5];
    let updates = [
        update(0, 100, &[1.0, 0.0, -1.0]),
        update(1, 300, &[-1.0, 4.0, 3.0]),
    ];
    let next = FedAvg
        .aggregate(&global, &updates, &mut rng())
        .expect("aggregate");
    // 0.25 · u₀ + 0.75 · u₁, added to the global parameters.
    assert_eq!(next, vec![1.0 - 0.5, -2.0 + 3.0, 0.5 + 2.0]);
}

#[test]
fn robust_aggregation_ignores_an_outlier() {
    let global = [0.0, 0.0];
    let mut updates: Vec<ClientUpdate> = (0..9)
        .map(|c| update(c, 10, &[1.0 + 0.01 * c as f32, -1.0]))
        .collect();
    updates.push(update(9, 10, &[1e6, -1e6]));
    let median = Median
        .aggregate(&global, &updates, &mut rng())
        .expect("median");
    assert!(
        (median[0] - 1.045).abs() < 1e-6 && median[1] == -1.0,
        "{median:?}"
    );
    let trimmed = TrimmedMean::new(0.1)
        .expect("trim")
        .aggregate(&global, &updates, &mut rng())
        .expect("trimmed");
    // One value cut from each end of 10: the outlier and the smallest.
    let expected = (1..9).map(|c| 1.0 + 0.01 * c as f64).sum::<f64>() / 8.0;
    assert!(
        (f64::from(trimmed[0]) - expected).abs() < 1e-6,
        "{trimmed:?}"
    );
    let mean = FedAvg
        .aggregate(&global, &updates, &mut rng())
        .expect("mean");
    assert!(mean[0] > 1e4, "the plain mean follows the outlier");
}

#[test]
fn server_adam_and_yogi_take_reddi_et_als_first_step() {
    let (lr, b1, b2, tau) = (0.1f32, 0.9f32, 0.99f32, 1e-3f32);
    let global = [0.5f32, -0.5];
    let updates = [update(0, 1, &[0.2, -0.4])];
    for yogi in [false, true] {
        let next = if yogi {
            FedAdaptive::yogi(lr, b1, b2, tau).expect("yogi").aggregate(
                &global,
                &updates,
                &mut rng(),
            )
        } else {
            FedAdaptive::adam(lr, b1, b2, tau).expect("adam").aggregate(
                &global,
                &updates,
                &mut rng(),
            )
        }
        .expect("step");
        for i in 0..2 {
            let d = updates[0].delta[i];
            let m = (1.0 - b1) * d;
            let v0 = tau * tau;
            let v = if yogi {
                v0 - (1.0 - b2) * d * d * (v0 - d * d).signum()
            } else {
                b2 * v0 + (1.0 - b2) * d * d
            };
            let expected = global[i] + lr * m / (v.sqrt() + tau);
            assert!(
                (next[i] - expected).abs() < 1e-6,
                "yogi {yogi}: {} vs {expected}",
                next[i]
            );
        }
    }
    assert!(FedAdaptive::adam(0.0, b1, b2, tau).is_err());
    assert!(FedAdaptive::yogi(lr, 1.0, b2, tau).is_err());
    assert!(FedAdaptive::adam(lr, b1, b2, 0.0).is_err());
}

#[test]
fn dp_fedavg_bounds_each_clients_influence_and_accounts() {
    let global = vec![0.0f32; 4];
    let huge = update(0, 1000, &[300.0, 400.0, 0.0, 0.0]); // norm 500
    let small = update(1, 1, &[0.03, 0.04, 0.0, 0.0]); // norm 0.05
    let mut dp = DpFedAvg::new(FedAvg, 1.0, 0.0, 2, 10, 1e-5).expect("dp");
    let next = dp
        .aggregate(&global, &[huge, small], &mut rng())
        .expect("aggregate");
    // Clipped to norm 1 and 0.05 (unweighted), summed, divided by the 2 expected clients.
    let expected = [(0.6 + 0.03) / 2.0, (0.8 + 0.04) / 2.0, 0.0, 0.0];
    for (a, b) in next.iter().zip(expected) {
        assert!((a - b).abs() < 1e-6, "{next:?}");
    }
    assert_eq!(dp.name(), "dp_fedavg");
    // With noise, ε grows with the rounds.
    let mut dp = DpFedAvg::new(FedAvg, 1.0, 1.0, 10, 100, 1e-5).expect("dp");
    let mut eps = Vec::new();
    for _ in 0..3 {
        let next = dp
            .aggregate(&global, &[update(0, 1, &[0.1; 4])], &mut rng())
            .expect("aggregate");
        assert!(
            next.iter().any(|&v| (v - 0.01).abs() > 1e-4),
            "no noise was added"
        );
        eps.push(dp.privacy().expect("ε").0);
    }
    assert!(
        eps[0] > 0.0 && eps[0] < eps[1] && eps[1] < eps[2],
        "{eps:?}"
    );
    assert!(DpFedAvg::new(FedAvg, 0.0, 1.0, 1, 10, 1e-5).is_err());
    assert!(DpFedAvg::new(FedAvg, 1.0, 1.0, 11, 10, 1e-5).is_err());
    assert!(DpFedAvg::new(FedAvg, 1.0, -1.0, 1, 10, 1e-5).is_err());
}

#[test]
fn updates_that_do_not_fit_are_refused() {
    let global = [0.0f32; 3];
    let err = |updates: &[ClientUpdate]| {
        FedAvg
            .aggregate(&global, updates, &mut rng())
            .expect_err("refused")
            .to_string()
    };
    assert!(err(&[]).contains("no client"));
    assert!(err(&[update(4, 1, &[1.0, 2.0])]).contains("client 4 sent 2 values"));
    assert!(err(&[update(2, 1, &[1.0, f32::NAN, 0.0])]).contains("client 2"));
}
