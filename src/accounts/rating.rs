//! A user's rating summary, shown on profiles. The counts come from the
//! `rating_totals` table that reviews of finished orders keep
//! (`orders::reviews`); this is only the plain value and its view.

use serde::Serialize;

/// A user's ratings: how many, and their sum (exact; the average is
/// derived when shown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rating {
    pub count: i64,
    pub total: i64,
}

#[derive(Serialize)]
pub struct RatingView {
    pub count: i64,
    pub average: String,
}

impl Rating {
    /// `{count, average}`: the average as a string with two decimals,
    /// rounded half up, "0.00" when there are no ratings.
    pub fn view(self) -> RatingView {
        RatingView {
            count: self.count,
            average: average(self.count, self.total),
        }
    }
}

/// `total / count` rounded half up to hundredths, in integers: ratings are
/// positive, so half up is `floor((200 total + count) / 2 count)`.
fn average(count: i64, total: i64) -> String {
    if count <= 0 {
        return "0.00".into();
    }
    let (count, total) = (i128::from(count), i128::from(total));
    let hundredths = (200 * total + count) / (2 * count);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_round_half_up_to_two_decimals() {
        assert_eq!(average(0, 0), "0.00");
        assert_eq!(average(1, 5), "5.00");
        assert_eq!(average(3, 13), "4.33"); // 4.333…
        assert_eq!(average(3, 14), "4.67"); // 4.666…
        assert_eq!(average(8, 37), "4.63"); // 4.625 → half up
        assert_eq!(average(8, 35), "4.38"); // 4.375 → half up
        assert_eq!(average(2, 3), "1.50");
        assert_eq!(average(i64::MAX / 5, i64::MAX), "5.00");
    }
}
