//! What call the simulator places: caller, callee, channel variables, socket options.

/// A call to hand to the controller.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub uuid: String,
    pub caller_id_name: String,
    pub caller_id_number: String,
    pub destination: String,
    pub context: String,
    /// The SIP user of the caller (`variable_sip_from_user`).
    pub sip_from_user: String,
    /// Set for authenticated registrations (`variable_sip_auth_username`).
    pub sip_auth_username: Option<String>,
    /// Extra channel variables set by the dialplan before `socket` (e.g. `callrec_account_id`).
    pub variables: Vec<(String, String)>,
    /// `socket … async full`; without `full`, api/bgapi/event/linger are refused.
    pub full: bool,
    /// CHANNEL_PARK fires after the reply to this many commands following `myevents`
    /// (the captures show both 1 and 2: the race that puts a plain event in a JSON session);
    /// 0 means it fired before `myevents` and the controller never sees it (also captured).
    pub park_after: usize,
    /// Fault injection: events of these names are never delivered (a lost RECORD_STOP).
    pub lose_events: Vec<String>,
}

impl CallSpec {
    pub fn new(caller_id_number: &str, destination: &str) -> CallSpec {
        CallSpec {
            uuid: crate::clock::uuid_v4(),
            caller_id_name: caller_id_number.to_string(),
            caller_id_number: caller_id_number.to_string(),
            destination: destination.to_string(),
            context: "public".into(),
            sip_from_user: caller_id_number.to_string(),
            sip_auth_username: None,
            variables: Vec::new(),
            full: true,
            park_after: 1,
            lose_events: Vec::new(),
        }
    }

    pub fn caller_name(mut self, name: &str) -> Self {
        self.caller_id_name = name.into();
        self
    }

    pub fn uuid(mut self, uuid: &str) -> Self {
        self.uuid = uuid.into();
        self
    }

    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.variables.push((name.into(), value.into()));
        self
    }

    pub fn auth_username(mut self, user: &str) -> Self {
        self.sip_auth_username = Some(user.into());
        self
    }

    pub fn not_full(mut self) -> Self {
        self.full = false;
        self
    }

    pub fn lose_event(mut self, name: &str) -> Self {
        self.lose_events.push(name.to_string());
        self
    }

    pub fn park_after(mut self, n: usize) -> Self {
        self.park_after = n;
        self
    }
}
