// Stable addresses of the descriptors Swift starts from. Swift imports the
// generated `extern const` descriptors as values, which it may copy; a function
// returning the address keeps the pointer identity protobuf-c relies on.
#ifndef SLUICE_DESCRIPTORS_H
#define SLUICE_DESCRIPTORS_H

#include <protobuf-c/protobuf-c.h>

const ProtobufCMessageDescriptor *sluice_logs_request_descriptor(void);
const ProtobufCMessageDescriptor *sluice_traces_request_descriptor(void);
const ProtobufCMessageDescriptor *sluice_metrics_request_descriptor(void);
const ProtobufCMessageDescriptor *sluice_logs_response_descriptor(void);
const ProtobufCMessageDescriptor *sluice_traces_response_descriptor(void);
const ProtobufCMessageDescriptor *sluice_metrics_response_descriptor(void);
const ProtobufCMessageDescriptor *sluice_rpc_status_descriptor(void);
const ProtobufCMessageDescriptor *sluice_any_value_descriptor(void);
const ProtobufCMessageDescriptor *sluice_key_value_descriptor(void);
const ProtobufCMessageDescriptor *sluice_array_value_descriptor(void);
const ProtobufCMessageDescriptor *sluice_key_value_list_descriptor(void);
const ProtobufCMessageDescriptor *sluice_resource_descriptor(void);
const ProtobufCMessageDescriptor *sluice_scope_descriptor(void);
const ProtobufCMessageDescriptor *sluice_resource_logs_descriptor(void);
const ProtobufCMessageDescriptor *sluice_scope_logs_descriptor(void);
const ProtobufCMessageDescriptor *sluice_log_record_descriptor(void);

#endif
