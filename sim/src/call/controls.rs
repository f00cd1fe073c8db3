//! Test controls: what the test (playing the caller and the rest of the dialplan) asks of the
//! call through its [`CallHandle`](super::CallHandle), and the virtual clock moving on.

use super::*;

impl Sim {
    pub(super) async fn on_control(&mut self, c: Control) -> Io {
        match c {
            Control::Answer => self.answer_via_app().await,
            Control::Hangup(cause) => self.hangup(&cause, false).await,
            Control::Advance(d) => self.advance(d).await,
            Control::Bridge(number) => self.bridge(&number).await,
            Control::Unbridge => self.unbridge().await,
            Control::Kill => {
                self.socket_closed().await;
                Ok(())
            }
            Control::KillOnNextCommand => {
                self.faults.kill_next = true;
                Ok(())
            }
            Control::Sync(tx) => {
                let _ = tx.send(());
                Ok(())
            }
            Control::Api {
                line,
                reply,
                background,
                received_at,
            } => {
                // The channel saw the command, whichever connection brought it.
                let seen = Command {
                    line: format!("api {line}"),
                    headers: vec![],
                    received_at,
                };
                self.update(|r| r.commands.push(seen));
                if self.faults.hold {
                    self.faults.held_api.push((line, reply, background));
                    return Ok(());
                }
                self.answer_api(&line, reply, background).await
            }
            Control::Wrote { event, at } => {
                if event == "CHANNEL_ANSWER" {
                    self.update(|r| r.answer_sent_at = Some(at));
                }
                Ok(())
            }
            Control::SendMsg(cmd) => {
                if self.hung_up {
                    return Ok(());
                }
                self.sendmsg(&cmd).await
            }
            Control::Crash => {
                self.crash();
                self.socket_closed().await;
                Ok(())
            }
            Control::Hold(on) => {
                self.faults.hold = on;
                if !on {
                    for cmd in std::mem::take(&mut self.faults.held) {
                        self.process(cmd).await?;
                    }
                    for (line, reply, background) in std::mem::take(&mut self.faults.held_api) {
                        self.answer_api(&line, reply, background).await?;
                    }
                }
                Ok(())
            }
        }
    }

    /// An inbound `api` command: the body goes back before the command's effects (`api`:
    /// FreeSWITCH writes the response first) or after them (`bgapi`: the BACKGROUND_JOB follows
    /// the events the command fired, as captured).
    async fn answer_api(
        &mut self,
        line: &str,
        reply: tokio::sync::oneshot::Sender<String>,
        background: bool,
    ) -> Io {
        let (body, after) = self.api(line);
        if background {
            let r = self.run_after(after).await;
            let _ = reply.send(body);
            r
        } else {
            let _ = reply.send(body);
            self.run_after(after).await
        }
    }

    pub(super) async fn advance(&mut self, d: Duration) -> Io {
        let target = self.now_us + d.as_micros() as u64;
        if let Some((_, _, end)) = &self.playback {
            if *end <= target {
                let end = *end;
                let keep = self.now_us;
                self.now_us = end.max(keep);
                self.finish_playback().await?;
            }
        }
        loop {
            // The next limit to fire: FreeSWITCH compares whole epoch seconds.
            let deadline = |start_us: u64, limit: u64| (start_us / 1_000_000 + limit) * 1_000_000;
            let next_rec = self
                .recordings
                .iter()
                .enumerate()
                .filter(|(_, r)| r.limit_s > 0)
                .map(|(i, r)| (deadline(r.start_us, r.limit_s), i))
                .min();
            let next_app = self
                .app_record
                .as_ref()
                .filter(|a| a.rec.limit_s > 0)
                .map(|a| deadline(a.rec.start_us, a.rec.limit_s));
            match (next_rec, next_app) {
                (Some((t, i)), app) if t <= target && app.is_none_or(|a| t <= a) => {
                    self.now_us = self.now_us.max(t);
                    self.flush_recordings();
                    let r = self.recordings.remove(i);
                    self.finish_recording(r, "success-maxtime").await?;
                }
                (_, Some(t)) if t <= target => {
                    self.now_us = self.now_us.max(t);
                    self.flush_recordings();
                    self.finish_app_recording().await?;
                }
                _ => break,
            }
        }
        self.now_us = target;
        // Audio accrued: each recording's buffer reaches the file in whole buffers.
        self.flush_recordings();
        Ok(())
    }
}
