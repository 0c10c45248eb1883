#!/bin/sh
# Regenerates src/bindings.rs from the system's UCX headers (Debian's
# libucx-dev 1.13: apt-get install libucx-dev) with bindgen-cli
# (cargo install bindgen-cli). Only the ucp calls the transport uses, and
# the types they need, are kept; functions become fields of `UcpLib`,
# loaded from libucp at run time (no link-time dependency on UCX).
set -e
cd "$(dirname "$0")"
FUNCS='ucp_init_version|ucp_cleanup|ucp_config_read|ucp_config_release|ucp_worker_create|ucp_worker_destroy|ucp_worker_progress|ucp_worker_get_address|ucp_worker_release_address|ucp_worker_get_efd|ucp_worker_arm|ucp_worker_signal|ucp_ep_create|ucp_ep_close_nbx|ucp_tag_send_nbx|ucp_tag_recv_nbx|ucp_request_check_status|ucp_request_free|ucp_request_cancel|ucp_get_version_string|ucp_tag_probe_nb|ucp_tag_msg_recv_nbx'
bindgen /usr/include/ucp/api/ucp.h \
  --dynamic-loading UcpLib \
  --allowlist-function "$FUNCS" \
  --allowlist-var 'UCP_API_(MAJOR|MINOR)|UCS_OK|UCS_INPROGRESS|UCS_ERR_.*' \
  --allowlist-type 'ucs_status_t|ucp_tag_recv_info_t|ucp_.*_params_t|ucp_.*_field|ucp_.*_flags_t|ucp_op_attr_t|ucp_feature' \
  --no-layout-tests --no-doc-comments \
  --raw-line '#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals, dead_code, missing_docs, clippy::all)]' \
  -o src/bindings.rs -- -I/usr/include
