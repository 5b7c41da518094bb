//! Numeric tables from CSV or TSV files (gzipped or not) with a header row, and regression datasets made
//! from them.

use crate::DataError;
use crate::read::read_maybe_gzipped;
use burn::data::dataset::{Dataset, DatasetError};
use std::path::{Path, PathBuf};

/// A numeric table: named columns, rows of `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The file it was read from (used in errors).
    pub path: PathBuf,
    /// Column names from the header.
    pub columns: Vec<String>,
    /// Rows, each with `columns.len()` values.
    pub rows: Vec<Vec<f32>>,
}

impl Table {
    /// Reads a table. The delimiter is a tab when the header line holds one, a comma otherwise; blank lines
    /// are skipped; every row must have as many fields as the header and every field must be a number.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let bytes = read_maybe_gzipped(path)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            DataError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        Self::parse(&text, path)
    }

    /// Parses table text already in memory; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, DataError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| DataError::Empty {
            path: path.to_path_buf(),
        })?;
        let delimiter = if header.contains('\t') { '\t' } else { ',' };
        let columns: Vec<String> = header
            .split(delimiter)
            .map(|c| c.trim().to_string())
            .collect();
        let mut rows = Vec::new();
        for (index, line) in lines {
            let fields: Vec<&str> = line.split(delimiter).collect();
            if fields.len() != columns.len() {
                return Err(DataError::FieldCount {
                    path: path.to_path_buf(),
                    line: index + 1,
                    expected: columns.len(),
                    found: fields.len(),
                });
            }
            let row = fields
                .iter()
                .zip(&columns)
                .map(|(field, column)| {
                    let field = field.trim();
                    field
                        .parse::<f32>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| DataError::NotANumber {
                            path: path.to_path_buf(),
                            line: index + 1,
                            column: column.clone(),
                            value: field.to_string(),
                        })
                })
                .collect::<Result<Vec<f32>, _>>()?;
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            columns,
            rows,
        })
    }

    /// Splits the table into features (every other column) and a regression target (column `target`).
    pub fn regression(&self, target: &str) -> Result<RegressionDataset, DataError> {
        let t = self
            .columns
            .iter()
            .position(|c| c == target)
            .ok_or_else(|| DataError::NoSuchColumn {
                path: self.path.clone(),
                column: target.to_string(),
                available: self.columns.join(", "),
            })?;
        let feature_names = self
            .columns
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != t)
            .map(|(_, c)| c.clone())
            .collect();
        let items = self
            .rows
            .iter()
            .map(|row| RegressionItem {
                features: row
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != t)
                    .map(|(_, &v)| v)
                    .collect(),
                target: row[t],
            })
            .collect();
        Ok(RegressionDataset {
            feature_names,
            items,
        })
    }
}

/// One row of a regression dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionItem {
    /// The input features.
    pub features: Vec<f32>,
    /// The value to predict.
    pub target: f32,
}

/// A regression dataset held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionDataset {
    /// Feature names, in the order of [`RegressionItem::features`].
    pub feature_names: Vec<String>,
    /// The rows.
    pub items: Vec<RegressionItem>,
}

impl RegressionDataset {
    /// Number of input features.
    pub fn num_features(&self) -> usize {
        self.feature_names.len()
    }

    /// The rows at `indices`.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            feature_names: self.feature_names.clone(),
            items: indices.iter().map(|&i| self.items[i].clone()).collect(),
        }
    }

    /// Checks, before any training, that this split of `source` can be scored with R² = 1 − SSE/SST
    /// (and standardised): at least two rows whose targets are not all equal. Otherwise R² would come
    /// out NaN or −∞ after training.
    pub fn check_r2_scorable(&self, source: &str, split: &str) -> Result<(), DataError> {
        let too_small = |why: &str| DataError::SplitTooSmall {
            source_name: source.to_string(),
            split: split.to_string(),
            found: self.items.len(),
            needed: 2,
            why: why.to_string(),
        };
        if self.items.len() < 2 {
            return Err(too_small(
                "R² and the target's spread need two rows or more",
            ));
        }
        let first = self.items[0].target;
        if self.items.iter().all(|item| item.target == first) {
            return Err(too_small(&format!(
                "every target equals {first}, so R²'s total sum of squares is 0"
            )));
        }
        Ok(())
    }
}

impl Dataset<RegressionItem> for RegressionDataset {
    fn get(&self, index: usize) -> Result<RegressionItem, DatasetError> {
        Ok(self.items[index].clone())
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// The vendored diabetes data of Efron et al. (2004): 442 patients, 10 raw baseline features (age, sex, bmi,
/// bp, s1–s6) and the disease progression one year later as the target.
pub fn diabetes() -> Result<RegressionDataset, DataError> {
    Table::read(crate::data_dir().join("diabetes/diabetes.tsv"))?.regression("target")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_too_small_or_constant_for_r2_are_refused() {
        let item = |target| RegressionItem {
            features: vec![1.0],
            target,
        };
        let data = RegressionDataset {
            feature_names: vec!["x".into()],
            items: vec![item(1.0), item(2.0), item(2.0)],
        };
        assert!(data.check_r2_scorable("t.csv", "test").is_ok());
        let one = data.subset(&[0]);
        let err = one.check_r2_scorable("t.csv", "test").unwrap_err();
        assert!(
            matches!(
                &err,
                DataError::SplitTooSmall {
                    found: 1,
                    needed: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("t.csv") && err.to_string().contains("test split"),
            "{err}"
        );
        let constant = data.subset(&[1, 2]);
        let err = constant.check_r2_scorable("t.csv", "test").unwrap_err();
        assert!(err.to_string().contains("every target equals 2"), "{err}");
    }

    #[test]
    fn parses_csv_and_tsv() {
        let t = Table::parse("a,b\n1,2\n\n3,4.5\n", Path::new("t.csv")).unwrap();
        assert_eq!(t.columns, ["a", "b"]);
        assert_eq!(t.rows, vec![vec![1.0, 2.0], vec![3.0, 4.5]]);
        let t = Table::parse("a\tb\n1\t2\n", Path::new("t.tsv")).unwrap();
        assert_eq!(t.rows, vec![vec![1.0, 2.0]]);
    }

    #[test]
    fn missing_field_names_file_and_line() {
        let err = Table::parse("a,b,c\n1,2,3\n4,5\n", Path::new("rows.csv")).unwrap_err();
        assert!(matches!(
            err,
            DataError::FieldCount {
                line: 3,
                expected: 3,
                found: 2,
                ..
            }
        ));
        assert!(err.to_string().starts_with("rows.csv:3:"), "{err}");
    }

    #[test]
    fn bad_number_names_the_column() {
        let err = Table::parse("a,b\n1,x\n", Path::new("n.csv")).unwrap_err();
        assert_eq!(err.to_string(), "n.csv:2: field `b` is not a number: \"x\"");
        let err = Table::parse("a,b\n1,\n", Path::new("n.csv")).unwrap_err();
        assert!(matches!(err, DataError::NotANumber { .. }), "{err}");
    }

    #[test]
    fn empty_and_unknown_target_are_errors() {
        assert!(matches!(
            Table::parse("a,b\n", Path::new("e")),
            Err(DataError::Empty { .. })
        ));
        let t = Table::parse("a,b\n1,2\n", Path::new("t")).unwrap();
        let err = t.regression("y").unwrap_err();
        assert!(err.to_string().contains("no column named `y`"), "{err}");
        let r = t.regression("a").unwrap();
        assert_eq!(
            r.items[0],
            RegressionItem {
                features: vec![2.0],
                target: 1.0
            }
        );
    }

    #[test]
    fn vendored_diabetes_is_442_by_10() {
        let d = diabetes().unwrap();
        assert_eq!((d.len(), d.num_features()), (442, 10));
        // First row of the raw data: age 59, target 151.
        assert_eq!((d.items[0].features[0], d.items[0].target), (59.0, 151.0));
    }
}
