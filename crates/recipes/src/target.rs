//! The bar a recipe's headline result is held to, and the judgement of a result against it.

use crate::runs::RunSummary;
use serde::{Deserialize, Serialize};

/// The bar a report holds a recipe's headline result to. Bars that name a peer (another recipe of the same
/// report, by its registry name) are judged against that recipe's result in the same report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// No bar and nothing to say.
    None,
    /// A published figure or a comparison to read the result against; not judged.
    Reported {
        /// What the report prints.
        text: String,
    },
    /// Met when the result is at least `value`.
    AtLeast {
        /// The bar.
        value: f64,
        /// What the report prints.
        text: String,
    },
    /// Met when the result is at most `value`.
    AtMost {
        /// The bar.
        value: f64,
        /// What the report prints.
        text: String,
    },
    /// Met when the result is within `relative` of the reference the run computed on the same split
    /// (linear regression's closed-form least squares).
    NearReference {
        /// The largest relative gap.
        relative: f64,
        /// The reference's name.
        reference: String,
    },
    /// Met when the result is below the peer's in at most `time_slack` times the peer's training time.
    BelowPeerAtEqualTime {
        /// The peer recipe.
        peer: String,
        /// The peer's name in the report's text.
        label: String,
        /// The metric's unit.
        unit: String,
        /// The training-time allowance, as a multiple of the peer's seconds.
        time_slack: f64,
    },
    /// Met when the result is above the peer's.
    AbovePeer {
        /// The peer recipe.
        peer: String,
        /// The peer's name in the report's text.
        label: String,
        /// The metric's unit.
        unit: String,
    },
    /// Printed beside the peer's result; not judged.
    BesidePeer {
        /// The peer recipe.
        peer: String,
        /// What the report prints.
        text: String,
        /// The peer's name in the report's text.
        label: String,
    },
}

/// A metric's value as the report prints it: accuracies in percent, other figures to four places.
pub fn format_value(metric: &str, value: f64) -> String {
    if metric == "test_accuracy" {
        format!("{:.2}%", 100.0 * value)
    } else {
        format!("{value:.4}")
    }
}

impl Target {
    /// The bar's text and whether `run` met it (`None`: not judged, or its peer is not in `runs`).
    pub fn judge(&self, run: &RunSummary, runs: &[RunSummary]) -> (String, Option<bool>) {
        let r = &run.record;
        let peer = |name: &str| runs.iter().find(|p| p.recipe == name).map(|p| &p.record);
        match self {
            Self::None => ("—".into(), None),
            Self::Reported { text } => (text.clone(), None),
            Self::AtLeast { value, text } => (text.clone(), Some(r.value >= *value)),
            Self::AtMost { value, text } => (text.clone(), Some(r.value <= *value)),
            Self::NearReference {
                relative,
                reference,
            } => {
                let pct = 100.0 * relative;
                match run.reference {
                    Some(closed) => {
                        let gap = (r.value - closed).abs() / closed.abs();
                        (
                            format!(
                                "within {pct}% of {reference} {closed:.4} (gap {:.2}%)",
                                100.0 * gap
                            ),
                            Some(gap <= *relative),
                        )
                    }
                    None => (format!("within {pct}% of {reference}"), None),
                }
            }
            Self::BelowPeerAtEqualTime {
                peer: name,
                label,
                unit,
                time_slack,
            } => match peer(name) {
                Some(p) => (
                    format!(
                        "< the {label}'s {:.4} {unit} at equal training time ({label} {:.0} s, this {:.0} s)",
                        p.value, p.train_seconds, r.train_seconds
                    ),
                    Some(r.value < p.value && r.train_seconds <= time_slack * p.train_seconds),
                ),
                None => (
                    format!("beat the {label} at equal training time (no {label} run here)"),
                    None,
                ),
            },
            Self::AbovePeer {
                peer: name,
                label,
                unit,
            } => match peer(name) {
                Some(p) => (
                    format!("above {label}'s {:.2} {unit}", p.value),
                    Some(r.value > p.value),
                ),
                None => (format!("above {label}"), None),
            },
            Self::BesidePeer {
                peer: name,
                text,
                label,
            } => match peer(name) {
                Some(p) => (
                    format!("{text} ({label} {})", format_value(&p.metric, p.value)),
                    None,
                ),
                None => (text.clone(), None),
            },
        }
    }
}
