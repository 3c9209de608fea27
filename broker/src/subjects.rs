//! Subject names. Every subject unmark uses is built here and nowhere else.

/// Version 1 of the subject layout.
pub mod v1 {
    /// Prefix of all stage subjects.
    pub const STAGE_PREFIX: &str = "unmark.stage.";
    /// Prefix of all event subjects.
    pub const EVENTS_PREFIX: &str = "unmark.events.";

    /// Work subject of a stage: `unmark.stage.<name>`.
    pub fn stage(name: &str) -> String {
        format!("{STAGE_PREFIX}{name}")
    }

    /// Where clients submit jobs over NATS (request/reply): `unmark.jobs.submit`.
    pub fn submit() -> String {
        "unmark.jobs.submit".to_owned()
    }

    /// Prefix of all dead-letter subjects.
    pub const DLQ_PREFIX: &str = "unmark.dlq.";

    /// Dead letters of a stage: `unmark.dlq.<name>`, the messages it gave up on.
    pub fn dlq(name: &str) -> String {
        format!("{DLQ_PREFIX}{name}")
    }

    /// Events of one job: `unmark.events.<job_id>`.
    pub fn events(job_id: &str) -> String {
        format!("{EVENTS_PREFIX}{job_id}")
    }

    /// Events of every job: `unmark.events.>`.
    pub fn all_events() -> String {
        format!("{EVENTS_PREFIX}>")
    }

    /// Whether `subject` matches `filter`, where `*` matches one token and a final `>` one or
    /// more (NATS semantics).
    pub fn matches(filter: &str, subject: &str) -> bool {
        let mut f = filter.split('.');
        let mut s = subject.split('.');
        loop {
            match (f.next(), s.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn names() {
            assert_eq!(stage("inpaint"), "unmark.stage.inpaint");
            assert_eq!(events("abc"), "unmark.events.abc");
            assert_eq!(dlq("inpaint"), "unmark.dlq.inpaint");
        }

        #[test]
        fn wildcards() {
            assert!(matches(&all_events(), &events("abc")));
            assert!(!matches(&all_events(), "unmark.events"));
            assert!(matches("unmark.*.x", "unmark.stage.x"));
            assert!(!matches("unmark.stage.x", "unmark.stage.y"));
            assert!(!matches("unmark.stage", "unmark.stage.y"));
        }
    }
}
