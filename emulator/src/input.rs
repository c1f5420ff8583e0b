//! Input of one sample: event counts per frame and channel.

use crate::error::{Error, Result};
use crate::mem;

/// Largest number of frames accepted per sample.
pub const MAX_FRAMES: usize = 1 << 24;

/// Sparse input of one sample: for each frame, `(channel, count)` pairs with `count > 0`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SampleInput {
    pub n_channels: usize,
    pub frames: Vec<Vec<(u32, u32)>>,
}

impl SampleInput {
    /// From dense counts `[frame][channel]` (row-major, `n_frames x n_channels`).
    pub fn from_dense(counts: &[u32], n_frames: usize, n_channels: usize) -> Result<Self> {
        if counts.len() != n_frames * n_channels {
            return Err(Error::input(
                "inputs",
                format!(
                    "{} values for ({n_frames}, {n_channels}) frames",
                    counts.len()
                ),
            ));
        }
        if n_frames > MAX_FRAMES {
            return Err(Error::input(
                "inputs",
                format!("{n_frames} frames is outside 0..={MAX_FRAMES}"),
            ));
        }
        let mut frames = mem::with_capacity(n_frames, "input frames")?;
        for f in 0..n_frames {
            let row = &counts[f * n_channels..(f + 1) * n_channels];
            let nonzero = row.iter().filter(|&&c| c > 0).count();
            let events = row
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                // channel index < n_channels <= 2^28
                .map(|(c, &n)| {
                    #[allow(clippy::cast_possible_truncation)]
                    let c = c as u32;
                    (c, n)
                });
            frames.push(mem::collect(nonzero, events, "input events of a frame")?);
        }
        Ok(Self { n_channels, frames })
    }

    /// From an event stream: event `i` at integer time `times[i]` (e.g. microseconds) on
    /// `channels[i]`; times must be sorted and non-negative. Frame of an event is
    /// `time / dt`; `n_frames` defaults to just enough frames for the last event.
    pub fn from_events(
        times: &[i64],
        channels: &[i64],
        dt: i64,
        n_frames: Option<usize>,
        n_channels: usize,
    ) -> Result<Self> {
        if times.len() != channels.len() {
            return Err(Error::input(
                "events",
                format!(
                    "{} times but {} channels (one of each per event)",
                    times.len(),
                    channels.len()
                ),
            ));
        }
        if dt <= 0 {
            return Err(Error::input("dt", format!("{dt} is outside 1..")));
        }
        for (i, w) in times.windows(2).enumerate() {
            if w[1] < w[0] {
                return Err(Error::input(
                    "events.t",
                    format!(
                        "event times must be sorted: t[{}] = {} < t[{i}] = {}",
                        i + 1,
                        w[1],
                        w[0]
                    ),
                ));
            }
        }
        if let Some(&t0) = times.first() {
            if t0 < 0 {
                return Err(Error::input(
                    "events.t",
                    format!("negative event time {t0}; times must be >= 0"),
                ));
            }
        }
        let needed = times.last().map_or(0, |&t| {
            usize::try_from(t / dt)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        });
        let n_frames = n_frames.unwrap_or(needed);
        if n_frames > MAX_FRAMES {
            return Err(Error::input(
                "n_frames",
                format!("{n_frames} is outside 0..={MAX_FRAMES}"),
            ));
        }
        if needed > n_frames {
            return Err(Error::input(
                "events.t",
                format!(
                    "event at t = {} falls in frame {} but only {n_frames} frames of dt = {dt} were asked for",
                    times.last().copied().unwrap_or(0),
                    needed - 1
                ),
            ));
        }
        let mut dense: Vec<std::collections::BTreeMap<u32, u32>> =
            mem::filled(n_frames, Default::default(), "input frames")?;
        for (i, (&t, &c)) in times.iter().zip(channels).enumerate() {
            if c < 0 || c as u64 >= n_channels as u64 {
                return Err(Error::input(
                    "events.channel",
                    format!("channel {c} of event {i} is outside 0..{n_channels}"),
                ));
            }
            let f = usize::try_from(t / dt).unwrap_or(usize::MAX);
            // checked above: 0 <= c < n_channels <= 2^28
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let e = dense[f].entry(c as u32).or_insert(0);
            *e = e.saturating_add(1);
        }
        let mut frames = mem::with_capacity(n_frames, "input frames")?;
        for m in dense {
            frames.push(mem::collect(m.len(), m, "input events of a frame")?);
        }
        Ok(Self { n_channels, frames })
    }

    /// The samples of a batch of dense counts `[sample][frame][channel]` (row-major).
    pub fn batch_from_dense(
        counts: &[u32],
        batch: usize,
        n_frames: usize,
        n_channels: usize,
    ) -> Result<Vec<Self>> {
        let per = n_frames.saturating_mul(n_channels);
        if counts.len() != batch.saturating_mul(per) {
            return Err(Error::input(
                "inputs",
                format!(
                    "{} values for ({batch}, {n_frames}, {n_channels}) frames",
                    counts.len()
                ),
            ));
        }
        (0..batch)
            .map(|i| Self::from_dense(&counts[i * per..(i + 1) * per], n_frames, n_channels))
            .collect()
    }

    /// The samples of a batch of event streams `(times, channels)`, binned into frames of
    /// `dt`. One frame count for the whole batch: `n_frames`, by default just enough for the
    /// latest event of any sample. Errors name the sample (`sample 2: events.t: ...`).
    pub fn batch_from_events(
        streams: &[(&[i64], &[i64])],
        dt: i64,
        n_frames: Option<usize>,
        n_channels: usize,
    ) -> Result<Vec<Self>> {
        if dt <= 0 {
            return Err(Error::input("dt", format!("{dt} is outside 1..")));
        }
        let n_frames = n_frames.unwrap_or_else(|| {
            let last = streams
                .iter()
                .filter_map(|(t, _)| t.iter().copied().max())
                .max()
                .unwrap_or(-1);
            if last < 0 {
                0 // no events (a negative time is refused below, sample by sample)
            } else {
                usize::try_from((last / dt).saturating_add(1)).unwrap_or(usize::MAX)
            }
        });
        streams
            .iter()
            .enumerate()
            .map(|(i, (t, c))| {
                Self::from_events(t, c, dt, Some(n_frames), n_channels).map_err(|e| match e {
                    Error::Input { field, message } => {
                        Error::input(format!("sample {i}: {field}"), message)
                    }
                    other => other,
                })
            })
            .collect()
    }

    #[must_use]
    pub fn n_frames(&self) -> usize {
        self.frames.len()
    }

    /// Total input events.
    #[must_use]
    pub fn n_events(&self) -> u64 {
        self.frames
            .iter()
            .flatten()
            .map(|&(_, n)| u64::from(n))
            .sum()
    }
}
