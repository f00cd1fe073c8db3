//! The session's link room: the event-socket link lost while the call is followed over it is an
//! outage, not an ending. Running recordings stay open; within the grace the call is routed
//! again and FreeSWITCH's `uuid_dump` says what was missed; past it, files are judged from disk.

use super::*;

impl Session {
    /// The link went while the call was followed over it: an outage, not an ending.
    /// FreeSWITCH records on, so running recordings stay open and recordings waiting for
    /// answer or bridge keep waiting; once the link is back (within `esl_down_grace_ms`) the
    /// call is followed again and its state asked for ([`Action::Resync`]). Only a link that
    /// stays down past the grace hands the recordings to their files.
    pub(super) fn on_link_lost(&mut self, out: &mut Vec<Action>) {
        if self.closed || !self.link {
            // Already over, or followed over its socket (a callflow, a fallback): the link's
            // loss changes nothing for this call.
            return;
        }
        if !self.released {
            // Still deciding, the socket still open: follow the call over it instead.
            warn!(
                "event-socket link lost before the hand-back: following the call over its socket"
            );
            return self.follow_over_socket(out);
        }
        // Commands in flight get no reply now; what they did shows in the channel's state and
        // in the events that follow.
        self.in_flight.clear();
        self.queue.clear();
        let running = self
            .recordings
            .iter()
            .filter(|r| r.state.awaits_stop())
            .count();
        let waiting = self
            .recordings
            .iter()
            .filter(|r| matches!(r.state, State::Waiting(_)))
            .count();
        if self.hangup_complete {
            // The call is over: its files are final; the grace timer after hangup finishes
            // what RECORD_STOP has not.
            self.closed = true;
        } else if running + waiting > 0 {
            warn!(
                running,
                waiting,
                "event-socket link lost: the call's recordings stay open; following the call again when the link is back"
            );
            out.push(Action::Resync);
        } else {
            self.closed = true;
        }
    }

    pub(super) fn on_resynced(
        &mut self,
        result: Result<Option<Event>, String>,
        out: &mut Vec<Action>,
    ) {
        let why = match result {
            Ok(Some(dump)) => {
                let answered = dump.get("Answer-State").is_some_and(|a| a == "answered");
                let bridged = dump.get("Other-Leg-Unique-ID").is_some();
                info!(
                    answered,
                    bridged, "event-socket link back: following the call again"
                );
                if answered {
                    self.answered = true;
                    self.start_waiting(Trigger::OnAnswer, out);
                }
                if bridged {
                    self.on_bridged(&dump, out);
                }
                return;
            }
            Ok(None) => {
                // The channel is gone, so FreeSWITCH has closed its files: they are final.
                let why = "the call ended while the event-socket link was down";
                for idx in 0..self.recordings.len() {
                    if self.recordings[idx].state.awaits_stop() {
                        info!(recording_id = %self.recordings[idx].id, reason = why, "finishing the recording from its file, which is final");
                        self.finish_from_disk(idx, why, out);
                    }
                }
                why.to_string()
            }
            Err(e) => {
                // The link stayed down past its grace: the files are all there is to go by.
                self.watch_started(out);
                e
            }
        };
        for r in &mut self.recordings {
            if matches!(r.state, State::Waiting(_)) {
                info!(recording_id = %r.id, reason = %why, "recording not started");
                r.state = State::Finished;
            }
        }
        self.closed = true;
    }
}
