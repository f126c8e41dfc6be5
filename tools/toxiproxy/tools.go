//go:build tools

// Package tools only pins the toxiproxy server for build.sh; nothing here is compiled into the operator.
package tools

import _ "github.com/Shopify/toxiproxy/v2/cmd/server"
