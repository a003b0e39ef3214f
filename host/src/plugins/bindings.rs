//! Host-side bindings generated from `wit/` (`world host`). Everything hand-written lives outside
//! this file; the generated code is the contract.

wasmtime::component::bindgen!({
    world: "host",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
    with: {
        "mailwit:plugin/message.message": crate::plugins::resources::MessageHandle,
    },
});
