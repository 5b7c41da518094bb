//! The accountant's ε equals Google's dp-accounting (0.6, `RdpAccountant`) within 1% on a grid of sampling
//! rates, noise multipliers, step counts and δ, and picks the same order. The figures are written by
//! `scripts/make_dp_accounting_fixtures.py`.

use kiln_privacy::RdpAccountant;

#[test]
fn epsilon_equals_dp_accounting_within_one_percent() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dp_accounting.json"
    );
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 200);
    let (mut worst, mut same_order) = (0.0f64, 0);
    for case in cases {
        let number = |field: &str| case[field].as_f64().unwrap();
        let mut accountant = RdpAccountant::new();
        accountant
            .compose_poisson_gaussian(
                number("sampling_rate"),
                number("noise_multiplier"),
                case["steps"].as_u64().unwrap(),
            )
            .unwrap();
        let (epsilon, order) = accountant.epsilon(number("delta")).unwrap();
        let expected = number("epsilon");
        let relative = (epsilon - expected).abs() / expected.max(1e-12);
        assert!(
            relative < 0.01,
            "{case}: ε {epsilon} at order {order} against dp-accounting's {expected}"
        );
        worst = worst.max(relative);
        same_order += usize::from(order == number("order"));
    }
    eprintln!(
        "largest relative difference {worst:.1e}; same optimal order in {same_order} of {}",
        cases.len()
    );
    assert_eq!(same_order, cases.len());
}
