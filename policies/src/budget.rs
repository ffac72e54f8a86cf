//! Budgets and rate limits per caller: calls per rolling minute, total calls, and seconds
//! of code execution per session.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::model::{Budget, Caller};

#[derive(Default)]
struct State {
    recent: VecDeque<Instant>,
    total: u64,
    code_time: Duration,
}

/// Mutable per-caller counters.
#[derive(Default)]
pub(crate) struct Budgets {
    state: Mutex<HashMap<Caller, State>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl Budgets {
    /// Charges one call, or says which budget is exhausted.
    pub(crate) fn charge(
        &self,
        caller: &Caller,
        tool: &str,
        budget: &Budget,
        now: Instant,
    ) -> Result<(), (&'static str, String)> {
        if *budget == Budget::default() {
            return Ok(());
        }
        let mut map = match self.state.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let st = map.entry(caller.clone()).or_default();
        while st
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            st.recent.pop_front();
        }
        if let Some(max) = budget.total_calls {
            if st.total >= max {
                return Err((
                    "budget.total_calls",
                    format!(
                        "denied: {caller} has used all {max} calls this policy allows per session"
                    ),
                ));
            }
        }
        if let Some(max) = budget.calls_per_minute {
            if st.recent.len() >= max as usize {
                let wait = st.recent.front().map_or(WINDOW, |t| {
                    WINDOW.saturating_sub(now.saturating_duration_since(*t))
                });
                return Err((
                    "budget.calls_per_minute",
                    format!(
                        "denied: {caller} reached {max} calls per minute; retry in {:.1} s",
                        wait.as_secs_f64()
                    ),
                ));
            }
        }
        if tool == "code" {
            if let Some(max) = budget.code_seconds_per_session {
                if st.code_time >= Duration::from_secs(max) {
                    return Err((
                        "budget.code_seconds_per_session",
                        format!("denied: {caller} has used its {max} s of code execution for this session"),
                    ));
                }
            }
        }
        st.recent.push_back(now);
        st.total += 1;
        Ok(())
    }

    pub(crate) fn record_code_time(&self, caller: &Caller, took: Duration) {
        let mut map = match self.state.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(caller.clone()).or_default().code_time += took;
    }
}
