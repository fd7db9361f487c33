

def test_own_deployment_gets_everything_but_the_workload():
    """app.enabled: false (Sluice goes into a Deployment of the user's own): the chart
    renders the config, Secret, Service, ServiceMonitor and NetworkPolicy for pods
    with the labels NOTES names, and no workload of its own."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render({**values_of("values-splunk.yaml"), "app": {"enabled": False}}, name="ai-gateway", namespace="apps")
    objects = [doc for name, text in out.items() if not name.endswith("NOTES.txt") for doc in yaml.load_all(text, Loader=NoDuplicateKeys) if doc]
    assert not dc.all_pods(objects)
    assert {"ConfigMap", "Secret", "Service", "ServiceMonitor", "NetworkPolicy"} <= {o["kind"] for o in objects}
    dc.validate_schemas(objects)
    selector = next(o for o in objects if o["kind"] == "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
    notes = out["sluice/templates/NOTES.txt"]
    for key, value in selector.items():
        assert f"{key}: {value}" in notes, f"NOTES does not tell the user to label the pods {key}: {value}"
