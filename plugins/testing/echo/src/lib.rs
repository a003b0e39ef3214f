//! A minimal test plugin: rejects mail from `reject@` senders at MAIL, continues otherwise.

wit_bindgen::generate!({
    inline: "
        package mailwit-test:echo;
        world echo {
            import mailwit:plugin/log@0.2.0;
            export mailwit:plugin/mail@0.2.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use exports::mailwit::plugin::mail::Guest;
use mailwit::plugin::types::{Reply, ReversePath, SessionInfo, Verdict};

struct Echo;

impl Guest for Echo {
    fn on_mail(_session: SessionInfo, reverse_path: ReversePath) -> Verdict {
        if reverse_path.address.starts_with("reject@") {
            mailwit::plugin::log::log(mailwit::plugin::log::Level::Info, "rejecting");
            Verdict::Reject(Reply {
                code: 550,
                enhanced: "5.7.1".into(),
                text: "echo says no".into(),
            })
        } else {
            Verdict::Continue
        }
    }
}

export!(Echo);
