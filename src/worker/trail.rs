//! The marks one attempt leaves on its job's timeline (`queue::timeline`), gathered while it runs
//! (task-local: no argument threads through every call) and written when it ends.

use std::cell::RefCell;

use chrono::Utc;

use crate::queue::timeline::Mark;

tokio::task_local! {
    static TRAIL: RefCell<Vec<Mark>>;
}

/// Notes that `what` happened to the running job (nothing outside an attempt).
pub(super) fn note(what: &str, detail: serde_json::Value) {
    let _ = TRAIL.try_with(|t| t.borrow_mut().push(Mark { at: Utc::now(), what: what.to_string(), detail }));
}

/// Runs `f` as one attempt, returning what it returned and the marks it left.
pub(super) async fn gather<F: std::future::Future>(f: F) -> (F::Output, Vec<Mark>) {
    TRAIL
        .scope(RefCell::new(Vec::new()), async {
            let out = f.await;
            let marks = TRAIL.with(|t| t.take());
            (out, marks)
        })
        .await
}
