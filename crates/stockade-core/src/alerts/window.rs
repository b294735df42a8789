//! A sliding window of time-stamped counts, for the alert rules: values
//! added at a time, summed over a span ending now, pruned once too old.
//! Values closer together than the window's granularity (a thirtieth of it,
//! at least a second) share one bucket, so memory is bounded by the span
//! kept, not by how many observations arrive.

use std::collections::VecDeque;
use std::ops::AddAssign;

use chrono::{DateTime, Duration, Utc};

/// Buckets per window: a value is placed at most `window / BUCKETS` early.
pub(super) const BUCKETS: i32 = 30;

/// Counts by time (see the module documentation).
#[derive(Debug, Clone)]
pub(super) struct Series<T> {
    buckets: VecDeque<(DateTime<Utc>, T)>,
}

impl<T> Default for Series<T> {
    fn default() -> Self {
        Self {
            buckets: VecDeque::new(),
        }
    }
}

/// The bucket width of a window.
pub(super) fn granularity(window: Duration) -> Duration {
    (window / BUCKETS).max(Duration::seconds(1))
}

impl<T: Copy + Default + AddAssign> Series<T> {
    /// Adds `value` at `at`. A time before the newest bucket (a clock set
    /// back) counts in the newest bucket.
    pub(super) fn add(&mut self, at: DateTime<Utc>, value: T, granularity: Duration) {
        if let Some((start, sum)) = self.buckets.back_mut()
            && (at < *start || at - *start < granularity)
        {
            *sum += value;
            return;
        }
        self.buckets.push_back((at, value));
    }

    /// The sum of the values at times in `(after, until]`.
    pub(super) fn sum(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> T {
        let mut total = T::default();
        for (at, value) in self.buckets.iter().rev() {
            if *at <= after {
                break;
            }
            if *at <= until {
                total += *value;
            }
        }
        total
    }

    /// Forgets the values at or before `before`.
    pub(super) fn prune(&mut self, before: DateTime<Utc>) {
        while self.buckets.front().is_some_and(|(at, _)| *at <= before) {
            self.buckets.pop_front();
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// When the newest value was added.
    pub(super) fn latest(&self) -> Option<DateTime<Utc>> {
        self.buckets.back().map(|(at, _)| *at)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.buckets.len()
    }
}
