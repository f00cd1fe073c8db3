//! One simulated channel: its state, caller profile and variables, and the header list every
//! event about it carries, in the order the captures show.

use crate::clock::{date_gmt, date_local};
use crate::spec::CallSpec;
use crate::wire::Headers;

pub const CORE_UUID: &str = "af707745-c354-49a4-8f6c-4b774a2a3dbe";

/// The far end of a bridge, shown in `Other-Leg-*` headers.
#[derive(Debug, Clone)]
pub struct OtherLeg {
    pub uuid: String,
    pub number: String,
    pub answered_us: u64,
}

pub struct Channel {
    pub uuid: String,
    pub name: String,
    pub caller_id_name: String,
    pub caller_id_number: String,
    pub destination: String,
    pub context: String,
    pub state: (&'static str, u32),
    pub call_state: &'static str,
    pub answer_state: &'static str,
    pub created_us: u64,
    pub answered_us: u64,
    pub progress_media_us: u64,
    pub hangup_us: u64,
    pub transfer_us: u64,
    pub bridged_us: u64,
    pub hangup_cause: Option<String>,
    pub other_leg: Option<OtherLeg>,
    pub vars: Vec<(String, String)>,
}

impl Channel {
    pub fn new(spec: &CallSpec, created_us: u64, session_id: u64) -> Channel {
        let user = &spec.sip_from_user;
        let name = format!("sofia/test/{user}@127.0.0.1:5070");
        let mut vars: Vec<(String, String)> = [
            ("direction", "inbound".to_string()),
            ("uuid", spec.uuid.clone()),
            ("session_id", session_id.to_string()),
            ("sip_from_user", user.clone()),
            ("sip_from_port", "5070".into()),
            ("sip_from_uri", format!("{user}@127.0.0.1:5070")),
            ("sip_from_host", "127.0.0.1".into()),
            ("video_media_flow", "disabled".into()),
            ("text_media_flow", "disabled".into()),
            ("channel_name", name.clone()),
            ("sip_call_id", format!("{session_id}-24616@127.0.0.1")),
            ("sip_local_network_addr", "127.0.0.1".into()),
            ("sip_network_ip", "127.0.0.1".into()),
            ("sip_network_port", "5070".into()),
            ("sip_invite_stamp", created_us.to_string()),
            ("sip_received_ip", "127.0.0.1".into()),
            ("sip_received_port", "5070".into()),
            ("sip_via_protocol", "udp".into()),
            ("sip_from_user_stripped", user.clone()),
            ("sip_from_tag", format!("{session_id}SIPpTag091")),
            ("sofia_profile_name", "test".into()),
            ("sofia_profile_url", "sip:mod_sofia@127.0.0.1:5080".into()),
            ("recovery_profile_name", "test".into()),
            (
                "sip_full_via",
                format!("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-24616-{session_id}-0"),
            ),
            ("sip_from_display", spec.caller_id_name.clone()),
            (
                "sip_full_from",
                format!(
                    "\"{}\" <sip:{user}@127.0.0.1:5070>;tag={session_id}SIPpTag091",
                    spec.caller_id_name
                ),
            ),
            ("sip_to_display", spec.destination.clone()),
            (
                "sip_full_to",
                format!("{0} <sip:{0}@127.0.0.1:5080>", spec.destination),
            ),
            ("sip_req_user", spec.destination.clone()),
            ("sip_req_port", "5080".into()),
            ("sip_req_uri", format!("{}@127.0.0.1:5080", spec.destination)),
            ("sip_req_host", "127.0.0.1".into()),
            ("sip_to_user", spec.destination.clone()),
            ("sip_to_port", "5080".into()),
            ("sip_to_uri", format!("{}@127.0.0.1:5080", spec.destination)),
            ("sip_to_host", "127.0.0.1".into()),
            ("sip_contact_user", user.clone()),
            ("sip_contact_port", "5070".into()),
            ("sip_contact_uri", format!("{user}@127.0.0.1:5070")),
            ("sip_contact_host", "127.0.0.1".into()),
            ("sip_via_host", "127.0.0.1".into()),
            ("sip_via_port", "5070".into()),
            ("max_forwards", "70".into()),
            (
                "switch_r_sdp",
                "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n".into(),
            ),
            ("ep_codec_string", "CORE_PCM_MODULE.PCMA@8000h@30i@64000b".into()),
            ("rtp_use_codec_string", "PCMU,PCMA".into()),
            ("remote_audio_media_flow", "sendrecv".into()),
            ("audio_media_flow", "sendrecv".into()),
            ("remote_media_ip", "127.0.0.1".into()),
            ("remote_media_port", "6000".into()),
            ("rtp_audio_recv_pt", "8".into()),
            ("rtp_use_codec_name", "PCMA".into()),
            ("rtp_use_codec_rate", "8000".into()),
            ("rtp_use_codec_ptime", "30".into()),
            ("rtp_use_codec_channels", "1".into()),
            ("rtp_last_audio_codec_string", "PCMA@8000h@30i@1c".into()),
            ("read_codec", "PCMA".into()),
            ("original_read_codec", "PCMA".into()),
            ("read_rate", "8000".into()),
            ("original_read_rate", "8000".into()),
            ("write_codec", "PCMA".into()),
            ("write_rate", "8000".into()),
            ("dtmf_type", "rfc2833".into()),
            ("endpoint_disposition", "RECEIVED".into()),
            ("call_uuid", spec.uuid.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(auth) = &spec.sip_auth_username {
            vars.push(("sip_auth_username".into(), auth.clone()));
            vars.push(("sip_auth_realm".into(), "127.0.0.1".into()));
        }
        vars.extend(spec.variables.iter().cloned());
        vars.push((
            "current_application_data".into(),
            "127.0.0.1:8084 async full".into(),
        ));
        vars.push(("current_application".into(), "socket".into()));
        vars.push(("socket_host".into(), "127.0.0.1".into()));
        Channel {
            uuid: spec.uuid.clone(),
            name,
            caller_id_name: spec.caller_id_name.clone(),
            caller_id_number: spec.caller_id_number.clone(),
            destination: spec.destination.clone(),
            context: spec.context.clone(),
            state: ("CS_EXECUTE", 4),
            call_state: "RINGING",
            answer_state: "ringing",
            created_us,
            answered_us: 0,
            progress_media_us: 0,
            hangup_us: 0,
            transfer_us: 0,
            bridged_us: 0,
            hangup_cause: None,
            other_leg: None,
            vars,
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets a channel variable, in place if it exists (FreeSWITCH keeps the original position).
    pub fn set_var(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
    }

    /// The headers every event starts with.
    pub fn event_base(
        &self,
        name: &str,
        calling: (&str, &str, u32),
        now_us: u64,
        seq: u64,
    ) -> Headers {
        let mut h: Headers = Vec::with_capacity(180);
        let mut put = |k: &str, v: String| h.push((k.to_string(), v));
        put("Event-Name", name.to_string());
        put("Core-UUID", CORE_UUID.to_string());
        put("FreeSWITCH-Hostname", "vm".into());
        put("FreeSWITCH-Switchname", "vm".into());
        put("FreeSWITCH-IPv4", "192.0.2.2".into());
        put("FreeSWITCH-IPv6", "fd00::2".into());
        put("Event-Date-Local", date_local(now_us));
        put("Event-Date-GMT", date_gmt(now_us));
        put("Event-Date-Timestamp", now_us.to_string());
        put("Event-Calling-File", calling.0.to_string());
        put("Event-Calling-Function", calling.1.to_string());
        put("Event-Calling-Line-Number", calling.2.to_string());
        put("Event-Sequence", seq.to_string());
        h
    }

    fn profile(&self, prefix: &str, h: &mut Headers) {
        let t = |v: u64| v.to_string();
        let fields: [(&str, String); 30] = [
            ("Direction", "inbound".into()),
            ("Logical-Direction", "inbound".into()),
            ("Username", self.caller_id_number.clone()),
            ("Dialplan", "XML".into()),
            ("Caller-ID-Name", self.caller_id_name.clone()),
            ("Caller-ID-Number", self.caller_id_number.clone()),
            ("Orig-Caller-ID-Name", self.caller_id_name.clone()),
            ("Orig-Caller-ID-Number", self.caller_id_number.clone()),
            ("Network-Addr", "127.0.0.1".into()),
            ("ANI", self.caller_id_number.clone()),
            ("Destination-Number", self.destination.clone()),
            ("Unique-ID", self.uuid.clone()),
            ("Source", "mod_sofia".into()),
            ("Context", self.context.clone()),
            ("Channel-Name", self.name.clone()),
            ("Profile-Index", "1".into()),
            ("Profile-Created-Time", t(self.created_us)),
            ("Channel-Created-Time", t(self.created_us)),
            ("Channel-Answered-Time", t(self.answered_us)),
            ("Channel-Progress-Time", "0".into()),
            ("Channel-Progress-Media-Time", t(self.progress_media_us)),
            ("Channel-Hangup-Time", t(self.hangup_us)),
            ("Channel-Transfer-Time", t(self.transfer_us)),
            ("Channel-Resurrect-Time", "0".into()),
            ("Channel-Bridged-Time", t(self.bridged_us)),
            ("Channel-Last-Hold", "0".into()),
            ("Channel-Hold-Accum", "0".into()),
            ("Screen-Bit", "true".into()),
            ("Privacy-Hide-Name", "false".into()),
            ("Privacy-Hide-Number", "false".into()),
        ];
        for (k, v) in fields {
            h.push((format!("{prefix}{k}"), v));
        }
    }

    /// Channel state, caller profile, other leg and variables: the body of every channel event.
    pub fn channel_headers(&self, h: &mut Headers) {
        let mut put = |k: &str, v: String| h.push((k.to_string(), v));
        put("Channel-State", self.state.0.to_string());
        put("Channel-Call-State", self.call_state.to_string());
        put("Channel-State-Number", self.state.1.to_string());
        put("Channel-Name", self.name.clone());
        put("Unique-ID", self.uuid.clone());
        put("Call-Direction", "inbound".into());
        put("Presence-Call-Direction", "inbound".into());
        put("Channel-HIT-Dialplan", "true".into());
        put("Channel-Call-UUID", self.uuid.clone());
        put("Answer-State", self.answer_state.to_string());
        if let Some(c) = &self.hangup_cause {
            put("Hangup-Cause", c.clone());
        }
        for (k, v) in [
            ("Channel-Read-Codec-Name", "PCMA"),
            ("Channel-Read-Codec-Rate", "8000"),
            ("Channel-Read-Codec-Bit-Rate", "64000"),
            ("Channel-Write-Codec-Name", "PCMA"),
            ("Channel-Write-Codec-Rate", "8000"),
            ("Channel-Write-Codec-Bit-Rate", "64000"),
        ] {
            put(k, v.to_string());
        }
        self.profile("Caller-", h);
        if let Some(o) = &self.other_leg {
            let mut put = |k: &str, v: String| h.push((k.to_string(), v));
            put("Other-Type", "originatee".into());
            put("Other-Leg-Direction", "outbound".into());
            put("Other-Leg-Logical-Direction", "outbound".into());
            put("Other-Leg-Username", o.number.clone());
            put("Other-Leg-Dialplan", "XML".into());
            put("Other-Leg-Caller-ID-Name", self.caller_id_name.clone());
            put("Other-Leg-Caller-ID-Number", self.caller_id_number.clone());
            put("Other-Leg-Callee-ID-Name", "Outbound Call".into());
            put("Other-Leg-Callee-ID-Number", o.number.clone());
            put("Other-Leg-Destination-Number", o.number.clone());
            put("Other-Leg-Unique-ID", o.uuid.clone());
            put("Other-Leg-Source", "mod_sofia".into());
            put("Other-Leg-Context", self.context.clone());
            put(
                "Other-Leg-Channel-Name",
                format!("sofia/test/{}@127.0.0.1:5090", o.number),
            );
            put("Other-Leg-Channel-Answered-Time", o.answered_us.to_string());
        }
        for (k, v) in &self.vars {
            h.push((format!("variable_{k}"), v.clone()));
        }
    }

    /// The outbound `connect` reply.
    pub fn channel_data(&self, now_us: u64, seq: u64, full: bool) -> Headers {
        let mut h = self.event_base(
            "CHANNEL_DATA",
            ("mod_event_socket.c", "parse_command", 2021),
            now_us,
            seq,
        );
        self.profile("Channel-", &mut h);
        self.channel_headers(&mut h);
        h.push(("Content-Type".into(), "command/reply".into()));
        h.push(("Reply-Text".into(), "+OK\n".into()));
        h.push(("Socket-Mode".into(), "async".into()));
        h.push((
            "Control".into(),
            if full { "full" } else { "single-channel" }.into(),
        ));
        h
    }
}
