//! Corpus BLEU computed as sacreBLEU 2.x computes it by default (`corpus_bleu(hyps, [refs])`): the `13a`
//! tokenizer (mteval-v13a's), case-sensitive, n-grams up to 4, clipped counts summed over the corpus, the
//! brevity penalty, and `exp` smoothing of zero n-gram matches. Hand-written because no maintained Rust crate
//! reproduces sacreBLEU's figures; the tests check it against values sacreBLEU 2.6.0 printed.

use regex::Regex;
use std::collections::HashMap;
use std::sync::LazyLock;

/// sacreBLEU's `13a` tokenization of one line.
pub fn tokenize_13a(line: &str) -> String {
    static RULES: LazyLock<[(Regex, &str); 4]> = LazyLock::new(|| {
        let re = |pattern: &str| Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        [
            // Punctuation and symbols except `'`, `-`, `.` and `,`.
            (re(r"([\{-~\[-` -&\(-\+:-@/])"), " $1 "),
            // Period and comma unless preceded by a digit…
            (re(r"([^0-9])([\.,])"), "$1 $2 "),
            // …or unless followed by one.
            (re(r"([\.,])([^0-9])"), " $1 $2"),
            // A dash after a digit.
            (re(r"([0-9])(-)"), "$1 $2 "),
        ]
    });
    let mut text = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if text.contains('&') {
        text = text
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut text = format!(" {text} ");
    for (rule, replacement) in RULES.iter() {
        text = rule.replace_all(&text, *replacement).into_owned();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A corpus BLEU score and what it is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Bleu {
    /// BLEU, 0–100.
    pub score: f64,
    /// Modified n-gram precisions (1- to 4-grams), in percent, smoothed as sacreBLEU's `exp` method.
    pub precisions: [f64; 4],
    /// Brevity penalty.
    pub brevity_penalty: f64,
    /// Hypothesis tokens.
    pub hyp_len: usize,
    /// Reference tokens.
    pub ref_len: usize,
}

impl std::fmt::Display for Bleu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.precisions;
        write!(
            f,
            "BLEU = {:.2} {:.1}/{:.1}/{:.1}/{:.1} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
            self.score,
            p[0],
            p[1],
            p[2],
            p[3],
            self.brevity_penalty,
            self.hyp_len as f64 / self.ref_len.max(1) as f64,
            self.hyp_len,
            self.ref_len
        )
    }
}

fn ngram_counts(tokens: &[&str], n: usize) -> HashMap<Vec<String>, usize> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts
            .entry(gram.iter().map(|t| t.to_string()).collect())
            .or_insert(0) += 1;
    }
    counts
}

/// Corpus BLEU of `hypotheses` against one reference each (same length and order).
pub fn corpus_bleu(hypotheses: &[String], references: &[String]) -> Bleu {
    let mut correct = [0usize; 4];
    let mut total = [0usize; 4];
    let (mut hyp_len, mut ref_len) = (0, 0);
    for (hyp, reference) in hypotheses.iter().zip(references) {
        let (hyp, reference) = (tokenize_13a(hyp), tokenize_13a(reference));
        let hyp: Vec<&str> = hyp.split(' ').filter(|t| !t.is_empty()).collect();
        let reference: Vec<&str> = reference.split(' ').filter(|t| !t.is_empty()).collect();
        hyp_len += hyp.len();
        ref_len += reference.len();
        for n in 1..=4 {
            let reference_counts = ngram_counts(&reference, n);
            for (gram, count) in ngram_counts(&hyp, n) {
                correct[n - 1] += count.min(reference_counts.get(&gram).copied().unwrap_or(0));
            }
            total[n - 1] += hyp.len().saturating_sub(n - 1);
        }
    }
    let mut precisions = [0.0; 4];
    let mut smooth = 1.0;
    for n in 0..4 {
        if total[n] == 0 {
            break;
        }
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    let brevity_penalty = if hyp_len == 0 {
        0.0
    } else if hyp_len > ref_len {
        1.0
    } else {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    };
    let score = if hyp_len == 0 || precisions.contains(&0.0) {
        0.0
    } else {
        brevity_penalty * (precisions.iter().map(|p| p.ln()).sum::<f64>() / 4.0).exp()
    };
    Bleu {
        score,
        precisions,
        brevity_penalty,
        hyp_len,
        ref_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    const HYPS: [&str; 4] = [
        "Y dijo Dios: Sea la luz, y fué la luz.",
        "El principio crió Dios los cielos.",
        "Jesús lloró.",
        "a.b 3.5, 12-4 \"x\" & y",
    ];
    const REFS: [&str; 4] = [
        "Y dijo Dios: Sea la luz: y fué la luz.",
        "EN el principio crió Dios los cielos y la tierra.",
        "Y lloró Jesús.",
        "a.b 3.5 , 12 - 4 \"x\" &amp; y",
    ];

    #[test]
    fn tokenization_equals_sacrebleu_13a() {
        // Printed by sacrebleu 2.6.0's Tokenizer13a.
        assert_eq!(
            tokenize_13a(HYPS[0]),
            "Y dijo Dios : Sea la luz , y fué la luz ."
        );
        assert_eq!(tokenize_13a(HYPS[3]), "a . b 3.5 , 12 - 4 \" x \" & y");
        assert_eq!(tokenize_13a(REFS[3]), "a . b 3.5 , 12 - 4 \" x \" & y");
    }

    #[test]
    fn corpus_bleu_equals_sacrebleu() {
        // sacrebleu.corpus_bleu(HYPS, [REFS]) = 71.36951519555033, counts [34, 26, 22, 18] of
        // [36, 32, 28, 24], hyp_len 36, ref_len 41.
        let bleu = corpus_bleu(&strings(&HYPS), &strings(&REFS));
        assert!((bleu.score - 71.36951519555033).abs() < 1e-9, "{bleu}");
        assert_eq!((bleu.hyp_len, bleu.ref_len), (36, 41));
        assert!((bleu.precisions[3] - 75.0).abs() < 1e-9, "{bleu}");
        // One sentence with no 4-gram at all: sacreBLEU gives 0.0 (100.0/25.0/25.0/0.0, BP 0.717).
        let short = corpus_bleu(&strings(&HYPS[2..3]), &strings(&REFS[2..3]));
        assert_eq!(short.score, 0.0);
        assert!((short.precisions[1] - 25.0).abs() < 1e-9, "{short}");
        assert!(
            (short.brevity_penalty - 0.7165313105737893).abs() < 1e-9,
            "{short}"
        );
        // Identical text scores 100; an empty hypothesis 0.
        assert!((corpus_bleu(&strings(&REFS), &strings(&REFS)).score - 100.0).abs() < 1e-9);
        assert_eq!(
            corpus_bleu(&strings(&[""]), &strings(&["a b c d"])).score,
            0.0
        );
    }
}
