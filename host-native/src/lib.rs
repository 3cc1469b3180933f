//! Native (tokio) host of cxone-agent-state. The driver comes with a later change.
