//! Event names callrec acts on, and a catch-all for the rest.

use std::fmt;

macro_rules! event_names {
    ($($variant:ident => $text:literal,)*) => {
        /// A FreeSWITCH event name (`Event-Name`).
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum EventName {
            $($variant,)*
            /// Any name this version has no variant for.
            Other(String),
        }

        impl EventName {
            pub fn parse(s: &str) -> EventName {
                match s {
                    $($text => EventName::$variant,)*
                    other => EventName::Other(other.to_string()),
                }
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $(EventName::$variant => $text,)*
                    EventName::Other(s) => s,
                }
            }
        }
    };
}

event_names! {
    ChannelData => "CHANNEL_DATA",
    ChannelCreate => "CHANNEL_CREATE",
    ChannelDestroy => "CHANNEL_DESTROY",
    ChannelState => "CHANNEL_STATE",
    ChannelCallState => "CHANNEL_CALLSTATE",
    ChannelAnswer => "CHANNEL_ANSWER",
    ChannelHangup => "CHANNEL_HANGUP",
    ChannelHangupComplete => "CHANNEL_HANGUP_COMPLETE",
    ChannelExecute => "CHANNEL_EXECUTE",
    ChannelExecuteComplete => "CHANNEL_EXECUTE_COMPLETE",
    ChannelBridge => "CHANNEL_BRIDGE",
    ChannelUnbridge => "CHANNEL_UNBRIDGE",
    ChannelProgress => "CHANNEL_PROGRESS",
    ChannelProgressMedia => "CHANNEL_PROGRESS_MEDIA",
    ChannelOutgoing => "CHANNEL_OUTGOING",
    ChannelPark => "CHANNEL_PARK",
    ChannelUnpark => "CHANNEL_UNPARK",
    ChannelOriginate => "CHANNEL_ORIGINATE",
    ChannelUuid => "CHANNEL_UUID",
    CallUpdate => "CALL_UPDATE",
    RecordStart => "RECORD_START",
    RecordStop => "RECORD_STOP",
    MediaBugStart => "MEDIA_BUG_START",
    MediaBugStop => "MEDIA_BUG_STOP",
    BackgroundJob => "BACKGROUND_JOB",
    Heartbeat => "HEARTBEAT",
    Api => "API",
    Custom => "CUSTOM",
    Dtmf => "DTMF",
    PlaybackStart => "PLAYBACK_START",
    PlaybackStop => "PLAYBACK_STOP",
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for n in ["RECORD_STOP", "CHANNEL_HANGUP_COMPLETE", "SOMETHING_NEW"] {
            assert_eq!(EventName::parse(n).as_str(), n);
        }
        assert_eq!(EventName::parse("RECORD_START"), EventName::RecordStart);
    }
}
