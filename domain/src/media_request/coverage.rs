//! How much of a request the Plex library already holds — the one rule behind the submit
//! check "already available" and the Plex sync's `partially_available` / `available`
//! (issue 11; docs/decisions.md "Availability from Plex").

use super::{MediaType, Seasons};

/// How much of a request (or a submission) Plex holds, for one 4K-ness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// Nothing of it.
    None,
    /// Some of the requested seasons (sorted, without duplicates): a TV request for seasons
    /// of which Plex has some, or an `"all"` request for a show Plex has any season of.
    Partial(Vec<u32>),
    /// All of it: the movie, or every season a TV request names.
    Full,
}

/// The coverage of a request for `media_type` with `requested` seasons (TV; `None` for
/// movies) when Plex has the media with `in_plex` seasons (`None`: Plex does not have it in
/// this 4K-ness; a movie Plex has is `Some(&[])`).
///
/// An `"all"` request is never fully covered: MediaNest does not know how many seasons a
/// show has or will have, so the seasons Plex holds (Specials, season 0, aside) are a
/// partial answer (Overseerr, which knows TMDB's season list, reports the rest).
pub fn coverage(
    media_type: MediaType,
    requested: Option<&Seasons>,
    in_plex: Option<&[u32]>,
) -> Coverage {
    let Some(in_plex) = in_plex else {
        return Coverage::None;
    };
    match (media_type, requested) {
        (MediaType::Movie, _) => Coverage::Full,
        (MediaType::Tv, Some(Seasons::List(wanted))) => {
            let mut held: Vec<u32> = wanted
                .iter()
                .copied()
                .filter(|season| in_plex.contains(season))
                .collect();
            held.sort_unstable();
            held.dedup();
            if held.is_empty() {
                Coverage::None
            } else if wanted.iter().all(|season| held.contains(season)) {
                Coverage::Full
            } else {
                Coverage::Partial(held)
            }
        }
        (MediaType::Tv, Some(Seasons::All(_)) | None) => {
            // "all" means the show's seasons; Specials (season 0) alone are not the show.
            let mut held: Vec<u32> = in_plex.iter().copied().filter(|s| *s > 0).collect();
            held.sort_unstable();
            held.dedup();
            if held.is_empty() {
                Coverage::None
            } else {
                Coverage::Partial(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_movie_plex_has_is_fully_covered_and_one_it_lacks_not_at_all() {
        assert_eq!(coverage(MediaType::Movie, None, Some(&[])), Coverage::Full);
        assert_eq!(coverage(MediaType::Movie, None, None), Coverage::None);
    }

    #[test]
    fn a_tv_request_is_full_only_when_every_named_season_is_in_plex() {
        let wanted = Seasons::List(vec![1, 2, 3]);
        assert_eq!(
            coverage(MediaType::Tv, Some(&wanted), Some(&[2, 1])),
            Coverage::Partial(vec![1, 2])
        );
        assert_eq!(
            coverage(MediaType::Tv, Some(&wanted), Some(&[0, 1, 2, 3, 4])),
            Coverage::Full
        );
        assert_eq!(
            coverage(MediaType::Tv, Some(&wanted), Some(&[5])),
            Coverage::None
        );
        assert_eq!(coverage(MediaType::Tv, Some(&wanted), None), Coverage::None);
    }

    #[test]
    fn an_all_seasons_request_is_at_most_partially_covered() {
        assert_eq!(
            coverage(MediaType::Tv, Some(&Seasons::ALL), Some(&[3, 1, 1])),
            Coverage::Partial(vec![1, 3])
        );
        assert_eq!(
            coverage(MediaType::Tv, Some(&Seasons::ALL), Some(&[])),
            Coverage::None
        );
    }
}
