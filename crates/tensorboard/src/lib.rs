//! TensorBoard event files written from Rust: scalars, histograms and PNG images under a log folder, read
//! by `tensorboard --logdir` (and by TensorBoard's own `EventAccumulator`, which the tests use).
//!
//! Written here because no maintained crate does it: `tensorboard-rs` (the one crate that did) has been
//! inactive since 2022 and pins protobuf 2 and image 0.23. The format is small and documented — TFRecord
//! framing ([`record`]) around protobuf `Event` messages ([`proto`]) — and the two well-kept crates it needs
//! do the work: `prost` (protobuf) and `crc32c`.
#![warn(missing_docs)]

pub mod proto;
pub mod record;

use prost::Message;
use proto::{Event, HistogramProto, Image, Kind, Summary, Value, What};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What can go wrong writing or reading event files.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The file or folder could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file that is not a sound event file.
    #[error("{path}: not an event file ({message})")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Buckets of the histograms [`EventWriter::histogram`] writes.
pub const HISTOGRAM_BUCKETS: usize = 30;

/// The serial number of this process's next event file.
static NEXT_FILE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An event file being written, `events.out.tfevents.<seconds>.<host>.<pid>.<serial>` in its folder (the
/// name TensorBoard looks for).
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// A new event file in `dir` (created if needed), starting with the file-version event.
    pub fn create(dir: &Path) -> Result<Self, BoardError> {
        std::fs::create_dir_all(dir).map_err(|source| BoardError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let seconds = now().floor() as u64;
        // Two writers of one process in one second (a run's scalars and its histograms) get two files.
        let serial = NEXT_FILE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.join(format!(
            "events.out.tfevents.{seconds}.{host}.{}.{serial}",
            std::process::id()
        ));
        let file = File::create(&path).map_err(|source| BoardError::Io {
            path: path.clone(),
            source,
        })?;
        let mut writer = Self {
            path,
            out: BufWriter::new(file),
        };
        writer.write(Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        writer.flush()?;
        Ok(writer)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The scalar `value` of series `tag` at `step`.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> Result<(), BoardError> {
        self.summary(tag, step, Kind::SimpleValue(value))
    }

    /// A histogram of `values` (non-finite ones left out) as series `tag` at `step`.
    pub fn histogram(&mut self, tag: &str, step: i64, values: &[f32]) -> Result<(), BoardError> {
        self.summary(tag, step, Kind::Histo(histogram(values, HISTOGRAM_BUCKETS)))
    }

    /// A PNG image (`png` holds the file's bytes) of `height × width` pixels with `channels` channels
    /// (1 grey, 3 RGB, 4 RGBA) as series `tag` at `step`.
    pub fn image(
        &mut self,
        tag: &str,
        step: i64,
        png: Vec<u8>,
        height: u32,
        width: u32,
        channels: u32,
    ) -> Result<(), BoardError> {
        let image = Image {
            height: height as i32,
            width: width as i32,
            colorspace: channels as i32,
            encoded_image_string: png,
        };
        self.summary(tag, step, Kind::Image(image))
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> Result<(), BoardError> {
        self.out.flush().map_err(|source| BoardError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn summary(&mut self, tag: &str, step: i64, value: Kind) -> Result<(), BoardError> {
        self.write(Event {
            wall_time: now(),
            step,
            what: Some(What::Summary(Summary {
                value: vec![Value {
                    tag: tag.into(),
                    value: Some(value),
                }],
            })),
        })
    }

    fn write(&mut self, event: Event) -> Result<(), BoardError> {
        record::write_record(&mut self.out, &event.encode_to_vec()).map_err(|source| {
            BoardError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `values` (non-finite ones left out) in `buckets` equal-width buckets between their smallest and their
/// largest.
pub fn histogram(values: &[f32], buckets: usize) -> HistogramProto {
    let finite: Vec<f64> = values
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| f64::from(v))
        .collect();
    let (min, max) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let mut h = HistogramProto {
        num: finite.len() as f64,
        sum: finite.iter().sum(),
        sum_squares: finite.iter().map(|v| v * v).sum(),
        ..Default::default()
    };
    if finite.is_empty() {
        return h;
    }
    (h.min, h.max) = (min, max);
    if max == min {
        h.bucket_limit = vec![max];
        h.bucket = vec![finite.len() as f64];
        return h;
    }
    let buckets = buckets.max(1);
    let width = (max - min) / buckets as f64;
    h.bucket_limit = (1..=buckets).map(|i| min + width * i as f64).collect();
    h.bucket_limit[buckets - 1] = max;
    h.bucket = vec![0.0; buckets];
    for v in finite {
        let i = (((v - min) / width).ceil() as usize).clamp(1, buckets) - 1;
        h.bucket[i] += 1.0;
    }
    h
}

/// Greyscale images (each `height × width` values, row by row, in any range) as one PNG grid of
/// `columns` columns with a one-pixel dark border; each image is stretched to its own minimum and maximum.
/// Returns the PNG's bytes and its height and width.
pub fn grey_grid_png(
    images: &[Vec<f32>],
    height: usize,
    width: usize,
    columns: usize,
) -> Result<(Vec<u8>, u32, u32), BoardError> {
    let columns = columns.clamp(1, images.len().max(1));
    let rows = images.len().div_ceil(columns).max(1);
    let (grid_h, grid_w) = (rows * (height + 1) + 1, columns * (width + 1) + 1);
    let mut pixels = vec![32u8; grid_h * grid_w];
    for (k, image) in images.iter().enumerate() {
        let (lo, hi) = image
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        let (top, left) = (
            (k / columns) * (height + 1) + 1,
            (k % columns) * (width + 1) + 1,
        );
        for y in 0..height {
            for x in 0..width {
                let v = image.get(y * width + x).copied().unwrap_or(lo);
                let grey = if v.is_finite() {
                    (v - lo) / span * 255.0
                } else {
                    0.0
                };
                pixels[(top + y) * grid_w + left + x] = grey.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let mut bytes = Vec::new();
    let format = |e: png::EncodingError| BoardError::Format {
        path: PathBuf::from("<image grid>"),
        message: e.to_string(),
    };
    {
        let mut encoder = png::Encoder::new(&mut bytes, grid_w as u32, grid_h as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(format)?;
        writer.write_image_data(&pixels).map_err(format)?;
    }
    Ok((bytes, grid_h as u32, grid_w as u32))
}

/// The events of an event file (for tests and tools).
pub fn read_events(path: &Path) -> Result<Vec<Event>, BoardError> {
    let bytes = std::fs::read(path).map_err(|source| BoardError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let format = |message: String| BoardError::Format {
        path: path.to_path_buf(),
        message,
    };
    record::read_records(&bytes)
        .map_err(format)?
        .iter()
        .map(|r| Event::decode(r.as_slice()).map_err(|e| format(e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_every_finite_value_once() {
        let values: Vec<f32> = (0..100)
            .map(|i| i as f32 / 10.0)
            .chain([f32::NAN])
            .collect();
        let h = histogram(&values, 10);
        assert_eq!(h.num, 100.0);
        assert_eq!(h.bucket.iter().sum::<f64>(), 100.0);
        assert_eq!((h.min, h.max), (0.0, f64::from(9.9f32)));
        assert_eq!(*h.bucket_limit.last().unwrap(), h.max);
        assert!((h.sum - 495.0).abs() < 1e-3);
        let flat = histogram(&[2.0; 5], 10);
        assert_eq!((flat.bucket_limit, flat.bucket), (vec![2.0], vec![5.0]));
        assert_eq!(histogram(&[], 10).num, 0.0);
    }

    #[test]
    fn an_image_grid_is_a_png_of_the_grid_size() {
        let images = vec![(0..12).map(|v| v as f32).collect::<Vec<f32>>(); 5];
        let (png, h, w) = grey_grid_png(&images, 3, 4, 3).unwrap();
        assert_eq!((h, w), (2 * 4 + 1, 3 * 5 + 1));
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn an_event_file_reads_back_with_its_tags_steps_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalar("train/loss", 3, 0.25).unwrap();
        w.histogram("weights/fc", 1, &[1.0, 2.0, 3.0]).unwrap();
        w.flush().unwrap();
        let name = w.path().file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        let events = read_events(w.path()).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[0].what,
            Some(What::FileVersion("brain.Event:2".into()))
        );
        let Some(What::Summary(s)) = &events[1].what else {
            panic!("a summary")
        };
        assert_eq!((events[1].step, s.value[0].tag.as_str()), (3, "train/loss"));
        assert_eq!(s.value[0].value, Some(Kind::SimpleValue(0.25)));
    }
}
