//! `reports/compress/report.md`, `report.json` and the accuracy-versus-size plot.

use kiln::recipes::compression::{CompressRecord, CompressReport};
use kiln::train::DeviceChoice;
use std::fmt::Write as _;
use std::path::Path;

/// The bars for a row, and whether it met them.
fn target(r: &CompressRecord, runs: &[CompressRecord]) -> (String, Option<bool>) {
    let drop = 100.0 * (r.baseline_accuracy - r.test_accuracy);
    let find =
        |model: &str, method: &str| runs.iter().find(|p| p.model == model && p.method == method);
    match r.method.as_str() {
        // "≥ 10× fewer non-zero weights": counted on weights (biases are never pruned).
        "prune_unstructured" if r.model == "mlp" && r.weights_total >= 9 * r.weights_nonzero => (
            format!(
                "≥ 10× fewer non-zero weights at ≤ 0.5 points (here {:.1}×, {drop:+.2} points)",
                r.weights_total as f64 / r.weights_nonzero.max(1) as f64
            ),
            Some(r.weights_total >= 10 * r.weights_nonzero && drop <= 0.5),
        ),
        "ptq_int8" => {
            let base = find(&r.model, "baseline").map_or(r.bytes_on_disk, |b| b.bytes_on_disk);
            let ratio = base as f64 / r.bytes_on_disk.max(1) as f64;
            (
                format!("≥ 3.5× smaller at ≤ 0.5 points (here {ratio:.2}×, {drop:+.2} points)"),
                Some(ratio >= 3.5 && drop <= 0.5),
            )
        }
        "prune_structured" => {
            let base = find(&r.model, "baseline")
                .map_or(r.latency_ms_per_batch, |b| b.latency_ms_per_batch);
            (
                format!(
                    "measurably faster (here {:.2} ms vs {:.2} ms a batch)",
                    r.latency_ms_per_batch, base
                ),
                Some(r.latency_ms_per_batch < 0.9 * base),
            )
        }
        "distill" => match find("mlp", "student_alone") {
            Some(alone) => {
                let closed = (r.test_accuracy - alone.test_accuracy)
                    / (r.baseline_accuracy - alone.test_accuracy).max(1e-9);
                (
                    format!(
                        "closes ≥ 50% of the student–teacher gap (here {:.0}%)",
                        100.0 * closed
                    ),
                    Some(closed >= 0.5),
                )
            }
            None => ("closes ≥ 50% of the student–teacher gap".into(), None),
        },
        _ => ("—".into(), None),
    }
}

/// Writes the report files into `out`.
pub fn write(
    out: &Path,
    report: &CompressReport,
    device: DeviceChoice,
    quick: bool,
    seconds: f64,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    kiln::core::files::write_atomic(
        out.join("report.json"),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    let series: Vec<(String, Vec<kiln::train::curves::LabelledPoint>)> = ["mlp", "cnn"]
        .iter()
        .map(|model| {
            (
                model.to_string(),
                report
                    .runs
                    .iter()
                    .filter(|r| r.model == *model)
                    .map(|r| {
                        // The method and the head of its variant ("prune_structured 50%").
                        let variant = r.variant.as_deref().unwrap_or("");
                        let head = variant.split([':', ',', '(']).next().unwrap_or("").trim();
                        let label = format!(" {} {head}", r.method);
                        (
                            r.bytes_on_disk as f64 / 1024.0,
                            100.0 * r.test_accuracy,
                            label,
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    kiln::train::curves::plot_scatter(
        &series,
        "MNIST test accuracy against saved size",
        ("weights on disk (KiB, log scale)", "test accuracy (%)"),
        &out.join("accuracy_vs_size.png"),
    )?;
    let mut md = String::new();
    writeln!(md, "# Kiln — compression report\n")?;
    writeln!(
        md,
        "Written by `cargo xtask compress{}`; device `{device}`; the whole run took {seconds:.0} s.\n",
        if quick { " --quick" } else { "" }
    )?;
    if quick {
        writeln!(
            md,
            "**Quick (smoke) run: small subsets and one epoch each; the figures are not results.**\n"
        )?;
    }
    writeln!(
        md,
        "| model | method | variant | test acc. | baseline | non-zero / total params | bytes on disk | ms / batch of 256 | bar | met |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|")?;
    for r in &report.runs {
        let (bar, met) = target(r, &report.runs);
        let met = match (quick, met) {
            (true, _) | (_, None) => "—",
            (false, Some(true)) => "yes",
            (false, Some(false)) => "**no**",
        };
        writeln!(
            md,
            "| {} | {} | {} | {:.2}% | {:.2}% | {} / {} | {} | {:.2} | {bar} | {met} |",
            r.model,
            r.method,
            r.variant.as_deref().unwrap_or(""),
            100.0 * r.test_accuracy,
            100.0 * r.baseline_accuracy,
            r.params_nonzero,
            r.params_total,
            r.bytes_on_disk,
            r.latency_ms_per_batch
        )?;
    }
    writeln!(
        md,
        "\n![accuracy against size](accuracy_vs_size.png)\n\nEvery model is saved, then scored as loaded back from its file. Unstructured pruning zeroes weights but keeps \
         the dense layout, so its files do not shrink (a sparse format would); the int8 files hold packed \
         8-bit weights with f32 scales (one per tensor, per block or per output channel), biases in f32; \
         W8A8 also rounds every layer's input to 256 levels over a range calibrated (MinMax) on 2,048 training \
         images, in float arithmetic (burn has no int8 kernels), so it shows the accuracy of int8 activations, \
         not their speed. `baseline` for distillation rows is the teacher \
         (named in the row's variant). Latency: median of 20 forward passes of 256 test images after 3 warm-ups."
    )?;
    if !report.notes.is_empty() {
        writeln!(md, "\n## Choices made on the validation split\n")?;
        for note in &report.notes {
            writeln!(md, "- {note}")?;
        }
    }
    kiln::core::files::write_atomic(out.join("report.md"), md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_report_renders_with_its_plot() {
        let committed =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/compress/report.json");
        let report: CompressReport =
            serde_json::from_str(&std::fs::read_to_string(committed).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &report, DeviceChoice::Flex, false, 1.0).unwrap();
        let png = dir.path().join("accuracy_vs_size.png");
        assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
        assert!(
            std::fs::read_to_string(dir.path().join("report.md"))
                .unwrap()
                .contains("ptq_int8")
        );
        if let Some(copy) = std::env::var_os("KILN_KEEP_PLOT") {
            std::fs::copy(&png, copy).unwrap();
        }
    }
}
