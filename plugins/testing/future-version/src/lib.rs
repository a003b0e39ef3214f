//! Built against a hypothetical `mailwit:plugin@0.3.0`; the 0.2 host must refuse to load it and
//! name both versions.

wit_bindgen::generate!({
    inline: "
        package mailwit:plugin@0.3.0;
        interface mail {
            on-mail: func(sender: string) -> bool;
        }
        world newer {
            export mail;
        }
    ",
});

struct Future;

impl exports::mailwit::plugin::mail::Guest for Future {
    fn on_mail(sender: String) -> bool {
        sender.is_empty()
    }
}

export!(Future);
