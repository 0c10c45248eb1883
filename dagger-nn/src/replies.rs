//! The replies of a step run by several worker threads.
//!
//! When one worker of a step fails, the others fail too, because of it:
//! their rings report the worker gone, or they give up waiting for it. The
//! trainers collect every worker's reply (so that no reply of a failed step
//! is left to be read as the next step's) and report the failure that
//! caused the others.

/// Every reply's value when all succeeded; otherwise the first error that
/// `caused_by_another` does not call a consequence of another worker's
/// failure (the first error when all are).
pub(crate) fn first_cause<T, E>(
    replies: Vec<Result<T, E>>,
    caused_by_another: impl Fn(&E) -> bool,
) -> Result<Vec<T>, E> {
    let mut values = Vec::with_capacity(replies.len());
    let mut errors = Vec::new();
    for reply in replies {
        match reply {
            Ok(v) => values.push(v),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        return Ok(values);
    }
    let cause = errors
        .iter()
        .position(|e| !caused_by_another(e))
        .unwrap_or(0);
    Err(errors.swap_remove(cause))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors are `(worker, caused by another)`.
    fn collect(replies: Vec<Result<u8, (u8, bool)>>) -> Result<Vec<u8>, (u8, bool)> {
        first_cause(replies, |e| e.1)
    }

    #[test]
    fn the_failure_that_caused_the_others_is_reported() {
        assert_eq!(collect(vec![Ok(1), Ok(2)]), Ok(vec![1, 2]));
        let replies = vec![Err((0, true)), Ok(5), Err((2, false)), Err((3, false))];
        assert_eq!(collect(replies), Err((2, false)));
        assert_eq!(collect(vec![Ok(1), Err((1, true))]), Err((1, true)));
    }
}
