//! Generated bindings (wit-bindgen 0.63) for the `mailwit:plugin@0.2.0` contract.
//!
//! The shared types and the host imports are generated once here. Each hook interface is generated
//! in a world of its own, so that its `export_*` macro embeds a component type that exports that one
//! hook: a plugin that calls `export!(MyPlugin: mail, rcpt)` exports exactly `mail` and `rcpt`, and
//! imports only the host interfaces its code actually calls (wit-component drops unused imports).

wit_bindgen::generate!({
    inline: "
        package mailwit-sdk:bindings;
        world sdk {
            include mailwit:plugin/imports@0.2.0;
            import mailwit:plugin/types@0.2.0;
        }
    ",
    path: "wit",
    world: "mailwit-sdk:bindings/sdk",
    generate_all,
    additional_derives: [PartialEq],
});

/// One hook interface in a world of its own, reusing the shared types and the message resource.
macro_rules! hook_world {
    ($module:ident, $inline:tt, $macro_name:tt, $bindings_module:tt) => {
        pub mod $module {
            wit_bindgen::generate!({
                inline: $inline,
                path: "wit",
                with: {
                    "mailwit:plugin/types@0.2.0": mailwit_plugin::bindings::mailwit::plugin::types,
                    "mailwit:plugin/message@0.2.0": mailwit_plugin::bindings::mailwit::plugin::message,
                },
                additional_derives: [PartialEq],
                pub_export_macro: true,
                export_macro_name: $macro_name,
                default_bindings_module: $bindings_module,
                runtime_path: "mailwit_plugin::__rt::wit_bindgen::rt",
            });
        }
    };
}

hook_world!(
    connect,
    "package mailwit-sdk:hooks; world connect-hook { import mailwit:plugin/message@0.2.0; export mailwit:plugin/connect@0.2.0; }",
    "export_connect",
    "mailwit_plugin::bindings::connect"
);
hook_world!(
    ehlo,
    "package mailwit-sdk:hooks; world ehlo-hook { import mailwit:plugin/message@0.2.0; export mailwit:plugin/ehlo@0.2.0; }",
    "export_ehlo",
    "mailwit_plugin::bindings::ehlo"
);
hook_world!(
    auth,
    "package mailwit-sdk:hooks; world auth-hook { import mailwit:plugin/message@0.2.0; export mailwit:plugin/auth@0.2.0; }",
    "export_auth",
    "mailwit_plugin::bindings::auth"
);
hook_world!(
    auth_challenge,
    "package mailwit-sdk:hooks; world auth-challenge-hook { import mailwit:plugin/message@0.2.0; export mailwit:plugin/auth-challenge@0.2.0; }",
    "export_auth_challenge",
    "mailwit_plugin::bindings::auth_challenge"
);
hook_world!(
    mail,
    "package mailwit-sdk:hooks; world mail-hook { import mailwit:plugin/message@0.2.0; export mailwit:plugin/mail@0.2.0; }",
    "export_mail",
    "mailwit_plugin::bindings::mail"
);
hook_world!(
    rcpt,
    "package mailwit-sdk:hooks; world rcpt-hook { import mailwit:plugin/message@0.2.0; export mailwit:plugin/rcpt@0.2.0; }",
    "export_rcpt",
    "mailwit_plugin::bindings::rcpt"
);
hook_world!(
    data,
    "package mailwit-sdk:hooks; world data-hook { import mailwit:plugin/message@0.2.0; export mailwit:plugin/data@0.2.0; }",
    "export_data",
    "mailwit_plugin::bindings::data"
);
hook_world!(
    route,
    "package mailwit-sdk:hooks; world route-hook { import mailwit:plugin/message@0.2.0; export mailwit:plugin/route@0.2.0; }",
    "export_route",
    "mailwit_plugin::bindings::route"
);
hook_world!(
    route_hold,
    "package mailwit-sdk:hooks; world route-hold-hook { import mailwit:plugin/message@0.2.0; export mailwit:plugin/route-hold@0.2.0; }",
    "export_route_hold",
    "mailwit_plugin::bindings::route_hold"
);
hook_world!(
    delivery,
    "package mailwit-sdk:hooks; world delivery-hook { import mailwit:plugin/message@0.2.0; export mailwit:plugin/delivery@0.2.0; }",
    "export_delivery",
    "mailwit_plugin::bindings::delivery"
);
hook_world!(
    outbound,
    "package mailwit-sdk:hooks; world outbound-hook { import mailwit:plugin/message@0.2.0; export mailwit:plugin/outbound@0.2.0; }",
    "export_outbound",
    "mailwit_plugin::bindings::outbound"
);
