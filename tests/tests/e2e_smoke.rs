//! Placeholder that compiles the support module.
mod support;

#[tokio::test]
async fn library_transition_over_real_http() {
    let server = support::sim(vec![support::on_shift("alice")], |_| {}).await;
    let m = cxone_agent_state::AgentStateManager::start(support::config(&server.base_url(), None))
        .await
        .unwrap();
    let c = m.transition_state("alice", "READY").await.unwrap();
    assert_eq!(c.new_state, "READY");
    m.shutdown(std::time::Duration::from_secs(1)).await;
}
