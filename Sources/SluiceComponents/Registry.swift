// SluiceComponents: every receiver, processor, exporter, connector and extension, one folder
// each, and the one list that registers them.
import SluiceCore

extension ComponentRegistry {
    /// Every component this build of Sluice has. A new component adds one line here.
    public static let builtIn: ComponentRegistry = {
        var registry = ComponentRegistry()
        registry.register(OTLPReceiverFactory())
        registry.register(EventsReceiverFactory())
        registry.register(BatchProcessorFactory())
        registry.register(MemoryLimiterProcessorFactory())
        registry.register(AttributesProcessorFactory())
        registry.register(ResourceProcessorFactory())
        registry.register(RedactionProcessorFactory())
        registry.register(FilterProcessorFactory())
        registry.register(ResourceDetectionProcessorFactory())
        registry.register(IntegrityProcessorFactory())
        registry.register(DebugExporterFactory())
        registry.register(FileExporterFactory())
        registry.register(NopExporterFactory())
        registry.register(OTLPGRPCExporterFactory())
        registry.register(OTLPHTTPExporterFactory())
        registry.register(SplunkHECExporterFactory())
        registry.register(ElasticsearchExporterFactory())
        registry.register(CloudWatchLogsExporterFactory())
        registry.register(DatadogExporterFactory())
        registry.register(SentinelExporterFactory())
        registry.register(WebhookExporterFactory())
        registry.register(RoutingConnectorFactory())
        registry.register(HealthCheckExtensionFactory())
        registry.register(FileStorageExtensionFactory())
        registry.register(BearerTokenAuthExtensionFactory())
        registry.register(BasicAuthExtensionFactory())
        registry.alias("otlp", for: "otlp_grpc", kind: .exporter)
        registry.alias("otlphttp", for: "otlp_http", kind: .exporter)
        return registry
    }()
}
