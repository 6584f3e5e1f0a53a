//! `wandb.Histogram`: counts in equal-width bins, computed as `numpy.histogram` computes them
//! (same edges, same bin for every value), so both clients log the same numbers.

use crate::core::values::Value;

/// wandb's limit on the number of bins.
pub const MAX_BINS: usize = 512;
/// Bins of the histogram a long numpy array in a history row becomes.
pub const AUTO_BINS: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub values: Vec<i64>,
    pub bins: Vec<f64>,
}

impl Histogram {
    /// Bins `data` into `num_bins` equal bins spanning its range, as `numpy.histogram(data,
    /// bins=num_bins)` does: for float32 data, numpy's edges are float32 too.
    pub fn from_data<T: Element>(data: &[T], num_bins: usize) -> Result<Self, String> {
        check_bins(num_bins)?;
        if data.is_empty() {
            return Err("cannot make a histogram of an empty sequence".into());
        }
        let (first, last, nans) = range(data);
        if nans == data.len() {
            return Err("cannot make a histogram of a sequence that is all NaN".into());
        }
        let (lo, hi) = (first.into(), last.into());
        if nans > 0 || !lo.is_finite() || !hi.is_finite() {
            return Err("cannot make a histogram of a sequence with NaN or infinite values".into());
        }
        let bins = T::linspace(first, last, num_bins + 1);
        let (first, last) = (bins[0], bins[num_bins]);
        if !(last - first).is_finite() || bins.windows(2).any(|pair| pair[0] >= pair[1]) {
            // numpy refuses these ranges too.
            return Err(format!(
                "the values' range [{first}, {last}] cannot be split into {num_bins} finite bins"
            ));
        }
        // The first guess may be a bin off at an edge; `bin_index` settles it by the edges,
        // as numpy does, so a multiplication serves where numpy divides. Bounded, so that
        // every guess is a finite number from 0 to about `num_bins`.
        let scale = (num_bins as f64 / (last - first)).min(f64::MAX);
        // Four sets of counts, one per lane: neighbouring values often share a bin, and one
        // set would make each count wait for the one before.
        let mut lanes = vec![[0i64; 4]; num_bins];
        let mut chunks = data.chunks_exact(4);
        for chunk in &mut chunks {
            for (lane, &x) in chunk.iter().enumerate() {
                lanes[bin_index(x.into(), first, scale, &bins)][lane] += 1;
            }
        }
        for &x in chunks.remainder() {
            lanes[bin_index(x.into(), first, scale, &bins)][0] += 1;
        }
        let values = lanes.iter().map(|lane| lane.iter().sum()).collect();
        Ok(Self { values, bins })
    }

    /// `np_histogram=(values, bins)`: taken as given, after wandb's checks.
    pub fn from_counts(values: Vec<i64>, bins: Vec<f64>) -> Result<Self, String> {
        check_bins(values.len())?;
        if bins.len() != values.len() + 1 {
            return Err(format!(
                "len(bins) must be len(values) + 1, got {} bins for {} values",
                bins.len(),
                values.len()
            ));
        }
        Ok(Self { values, bins })
    }

    pub fn to_value(&self) -> Value {
        Value::Map(vec![
            ("_type".into(), Value::Str("histogram".into())),
            (
                "values".into(),
                Value::List(self.values.iter().map(|&v| Value::Int(v)).collect()),
            ),
            (
                "bins".into(),
                Value::List(self.bins.iter().map(|&b| Value::Float(b)).collect()),
            ),
        ])
    }
}

fn check_bins(num_bins: usize) -> Result<(), String> {
    if num_bins == 0 {
        Err("a histogram needs at least one bin".into())
    } else if num_bins > MAX_BINS {
        Err(format!(
            "a histogram has at most {MAX_BINS} bins, got {num_bins}"
        ))
    } else {
        Ok(())
    }
}

/// What wandb keeps in the summary of a long numpy array: its statistics, not its values.
/// `integers` keeps min and max integral, as numpy's `.item()` of an integer array does.
pub fn array_stats(data: &[f64], integers: bool) -> Value {
    let n = data.len() as f64;
    let mean = data.iter().sum::<f64>() / n;
    let var = data.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    let mut sorted = data.to_vec();
    sorted.sort_by(f64::total_cmp);
    let extreme = |x: f64| {
        if integers {
            Value::Int(x as i64)
        } else {
            Value::Float(x)
        }
    };
    let mut stats = vec![
        ("_type".to_string(), Value::Str("numpy.ndarray".into())),
        ("var".to_string(), Value::Float(var)),
        ("mean".to_string(), Value::Float(mean)),
        ("min".to_string(), extreme(sorted[0])),
        ("max".to_string(), extreme(sorted[sorted.len() - 1])),
    ];
    for q in [10, 25, 75, 90] {
        stats.push((format!("{q}%"), Value::Float(percentile(&sorted, q as f64))));
    }
    stats.push(("size".to_string(), Value::Int(data.len() as i64)));
    Value::Map(stats)
}

/// numpy's default (linear) percentile of sorted data, with its interpolation formula.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let index = q / 100.0 * (sorted.len() - 1) as f64;
    let lower = index.floor() as usize;
    let upper = (lower + 1).min(sorted.len() - 1);
    let t = index - lower as f64;
    let (a, b) = (sorted[lower], sorted[upper]);
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

/// The element types numpy bins in their own precision.
pub trait Element: Copy + PartialOrd + Into<f64> {
    /// numpy's edges from the data's range, widened by a half on each side when it is a
    /// single value: `numpy.linspace(first, last, num)` in the element's precision, the step
    /// multiplied and the start added, the last edge exactly `last`.
    fn linspace(first: Self, last: Self, num: usize) -> Vec<f64>;
    fn is_nan(self) -> bool;
}

macro_rules! element {
    ($t:ty) => {
        impl Element for $t {
            fn linspace(mut first: $t, mut last: $t, num: usize) -> Vec<f64> {
                if first == last {
                    first -= 0.5;
                    last += 0.5;
                }
                let step = (last - first) / (num - 1) as $t;
                let mut edges: Vec<f64> = (0..num)
                    .map(|i| f64::from(i as $t * step + first))
                    .collect();
                edges[num - 1] = f64::from(last);
                edges
            }

            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
element!(f64);
element!(f32);

/// numpy's bin of `x`: the scaled offset, then corrected against the edges themselves, so
/// a value on an edge lands where the edges say.
/// The smallest and largest values and the number of NaNs (which fail every comparison),
/// in one pass of four independent lanes.
fn range<T: Element>(data: &[T]) -> (T, T, usize) {
    let (mut low, mut high, mut nans) = ([data[0]; 4], [data[0]; 4], [0usize; 4]);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        for lane in 0..4 {
            let x = chunk[lane];
            low[lane] = if x < low[lane] { x } else { low[lane] };
            high[lane] = if x > high[lane] { x } else { high[lane] };
            nans[lane] += usize::from(x.is_nan());
        }
    }
    for &x in chunks.remainder() {
        low[0] = if x < low[0] { x } else { low[0] };
        high[0] = if x > high[0] { x } else { high[0] };
        nans[0] += usize::from(x.is_nan());
    }
    let pick = |lanes: [T; 4], better: fn(&T, &T) -> bool| {
        lanes
            .into_iter()
            .reduce(|a, b| if better(&b, &a) { b } else { a })
            .expect("four lanes")
    };
    (pick(low, T::lt), pick(high, T::gt), nans.iter().sum())
}

fn bin_index(x: f64, first: f64, scale: f64, edges: &[f64]) -> usize {
    let last_bin = edges.len() - 2;
    let guess = (x - first) * scale;
    // SAFETY: x lies in [first, last] and scale is finite, so the guess is a finite number
    // from 0 to about the number of bins.
    let mut index = (unsafe { guess.to_int_unchecked::<i64>() } as usize).min(last_bin);
    if x < edges[index] {
        index -= 1;
    } else if index != last_bin && x >= edges[index + 1] {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_as_numpy_does() {
        // numpy.histogram([1, 2, 2, 3], bins=4) -> ([1, 0, 2, 1], [1.0, 1.5, 2.0, 2.5, 3.0])
        let h = Histogram::from_data(&[1.0f64, 2.0, 2.0, 3.0], 4).unwrap();
        assert_eq!(h.values, vec![1, 0, 2, 1]);
        assert_eq!(h.bins, vec![1.0, 1.5, 2.0, 2.5, 3.0]);
        assert_eq!(
            h.to_value().to_json(),
            r#"{"_type":"histogram","values":[1,0,2,1],"bins":[1.0,1.5,2.0,2.5,3.0]}"#
        );
    }

    #[test]
    fn long_array_statistics_as_wandb() {
        let data: Vec<f64> = (0..40).map(f64::from).collect();
        // wandb 0.31.0's summary of numpy.arange(40.0).
        assert_eq!(
            array_stats(&data, false).to_json(),
            r#"{"_type":"numpy.ndarray","var":133.25,"mean":19.5,"min":0.0,"max":39.0,"10%":3.9000000000000004,"25%":9.75,"75%":29.25,"90%":35.1,"size":40}"#
        );
    }

    #[test]
    fn a_single_value_spans_one_unit() {
        let h = Histogram::from_data(&[5.0f64, 5.0], 2).unwrap();
        assert_eq!(h.bins, vec![4.5, 5.0, 5.5]);
        assert_eq!(h.values, vec![0, 2]);
    }

    #[test]
    fn refuses_what_numpy_or_wandb_refuse() {
        assert!(Histogram::from_data::<f64>(&[], 4)
            .unwrap_err()
            .contains("empty"));
        assert!(Histogram::from_data(&[f64::NAN], 4)
            .unwrap_err()
            .contains("all NaN"));
        assert!(Histogram::from_data(&[1.0, f64::INFINITY], 4)
            .unwrap_err()
            .contains("infinite"));
        assert!(Histogram::from_data(&[-1e308f64, 1e308], 4)
            .unwrap_err()
            .contains("finite bins"));
        assert!(Histogram::from_data(&[1.0f64], 513)
            .unwrap_err()
            .contains("512"));
        assert!(Histogram::from_counts(vec![1, 2], vec![0.0, 1.0])
            .unwrap_err()
            .contains("len(bins)"));
    }
}
