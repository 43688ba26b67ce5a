complete -c logsinkd -s c -l config -d 'Read settings from this TOML file (options on the command line win)' -r -F
complete -c logsinkd -s l -l listen -d 'TCP address to listen on, e.g. 0.0.0.0:5140 or [::1]:5140; repeatable [default: 127.0.0.1:5140]' -r
complete -c logsinkd -l listen-udp -d 'UDP address to take datagrams on (each holds one or more lines), e.g. 0.0.0.0:514; repeatable [default: none]' -r
complete -c logsinkd -l listen-tls -d 'TCP address to serve syslog over TLS on (RFC 5425), e.g. 0.0.0.0:6514; needs tls_cert and tls_key; repeatable [default: none]' -r
complete -c logsinkd -l tls-cert -d 'The TLS listeners\' certificate chain, PEM, the server\'s own certificate first; `%d/NAME` is a systemd credential (LoadCredential=); read again at SIGHUP' -r -F
complete -c logsinkd -l tls-key -d 'The TLS listeners\' private key, PEM, unencrypted; read at start, before dropping privileges, and again at SIGHUP (if it cannot be read then, the old key stays)' -r -F
complete -c logsinkd -l tls-client-ca -d 'CA certificates (PEM) that issue client certificates: when set, every TLS client must present a certificate issued by one of them [default: none, no client certificate asked]' -r -F
complete -c logsinkd -l tls-peers -d 'TLS clients accepted (when set, only these): a DNS name or IP address of the client certificate (needs tls_client_ca), or `sha256:` and its fingerprint; repeatable' -r
complete -c logsinkd -l tls-handshake-timeout -d 'Seconds a TLS client may take to complete its handshake before it is closed (1 to 300) [default: 10]' -r
complete -c logsinkd -l tls-max-handshakes -d 'Most TLS handshakes in progress at once (each holds about 18 KiB until it completes); at the cap, TLS listeners accept no more until one completes or fails, and new clients wait in the backlog [default: 1024]' -r
complete -c logsinkd -l listen-unix -d 'Unix stream socket to listen on (lines, as over TCP), e.g. /run/logsinkd/in.sock; repeatable [default: none]' -r -F
complete -c logsinkd -l listen-unix-dgram -d 'Unix datagram socket to take messages on (each datagram one message, as over UDP; what `logger -u PATH` sends); repeatable [default: none]' -r -F
complete -c logsinkd -l unix-mode -d 'Mode of the unix sockets logsinkd creates, in octal, as a string in the file ("0660"); connecting needs write permission [default: 0660]' -r
complete -c logsinkd -l unix-owner -d 'Owner (name or uid) of the unix sockets logsinkd creates [default: the starting user]' -r
complete -c logsinkd -l unix-group -d 'Group (name or gid) of the unix sockets logsinkd creates [default: the starting group]' -r
complete -c logsinkd -s o -l output -d 'Where records go: a file path, `syslog`, `syslog:/path/to/socket`, `syslog+udp://host:port`, `syslog+tcp://host:port`, `journal` (journald\'s native socket, one entry per record with its fields) or `journal:/path/to/socket`. A file path may hold fields, for one file per sender: `{peer_ip}`, `{peer_port}`, `{listener}`, `{date}`, `{hour}` and, with parse = syslog, `{hostname}`, `{app}`, `{facility}`, `{severity}` (chosen by the sender); `{{` and `}}` are braces [default: ./logsinkd.log]' -r
complete -c logsinkd -l date-tz -d 'Zone of the `{date}` and `{hour}` fields of a file output\'s path: `utc` or `local` [default: utc]' -r
complete -c logsinkd -l max-open-files -d 'Most files a file output with fields in its path keeps open at once; the least recently written is closed to open another [default: derived from the open-file limit and max_connections]' -r
complete -c logsinkd -l file-idle-close -d 'Close a file of a file output with fields in its path after this many seconds without a write (it is opened again on the next) [default: 60]' -r
complete -c logsinkd -l fallback-output -d 'File for the records of a file output with fields in its path whose file cannot be created for good (no permission, a link in the way); without it they are held and retried, and reading from clients pauses [default: none]' -r -F
complete -c logsinkd -l format -d 'Record format: `default` (time, peer, escaped line), `raw` (bytes as received), `json`, or `syslog` (the classic syslog file layout: timestamp, host, tag, message)' -r
complete -c logsinkd -l framing -d 'How stream clients\' bytes are cut into messages: `lines` (each line), `octet` (RFC 6587 octet counting, `LEN <msg>`, as rsyslog and syslog-ng forward) or `auto` (octet if a connection starts with a complete `LEN <PRI>` header, else lines); a listener\'s table may override it [default: lines]' -r
complete -c logsinkd -l parse -d '`syslog`: scan each message for RFC 5424 / RFC 3164 fields (for the json and syslog formats and syslog relaying; a message that does not parse is recorded as it is); `none`: record messages as they are; a listener\'s table may override it [default: none]' -r
complete -c logsinkd -l max-line -d 'Longest line recorded as one record; longer lines are recorded in pieces of this size. Accepts a K, M suffix (KiB, MiB) [default: 64K]' -r
complete -c logsinkd -s p -l pid-file -d 'Write the daemon\'s pid to this file once it is ready; removed at exit' -r -F
complete -c logsinkd -s u -l user -d 'Switch to this user after binding the listeners and opening the output' -r
complete -c logsinkd -s g -l group -d 'Switch to this group after binding the listeners and opening the output [default: the user\'s primary group]' -r
complete -c logsinkd -l syslog-facility -d 'Syslog facility of recorded lines when the output is syslog or the journal; a parsed message keeps its sender\'s [default: user]' -r
complete -c logsinkd -l syslog-format -d 'Message format sent to a syslog output: `rfc3164` (the classic BSD format, what syslog(3) sends) or `rfc5424` [default: rfc3164]' -r
complete -c logsinkd -l syslog-framing -d 'How messages are framed on a `syslog+tcp://` output: `lines` (each ends with LF) or `octet` (RFC 6587 octet counting, for messages that hold LFs) [default: lines]' -r
complete -c logsinkd -l max-connections -d 'Most client connections open at once; at the cap new clients wait in the kernel\'s backlog [default: derived from the open-file limit]' -r
complete -c logsinkd -l backlog -d 'Listen backlog: connections the kernel queues before logsinkd accepts them [default: 1024]' -r
complete -c logsinkd -l idle-timeout -d 'Close a connection that sent nothing for this many seconds (its partial line is recorded); 0 turns it off; at most 31536000 (a year) [default: 0]' -r
complete -c logsinkd -l metrics-listen -d 'TCP address to serve Prometheus metrics on (`GET /metrics`), e.g. 127.0.0.1:9140 [default: none, no metrics served]' -r
complete -c logsinkd -l allow -d 'Clients allowed to send: an address or CIDR block (10.0.0.0/8, 2001:db8::/32, 127.0.0.1); a TCP client outside is reset at accept, a UDP datagram dropped; unix sockets are governed by their mode instead; repeatable; a listener\'s table may override it [default: any address]' -r
complete -c logsinkd -l proxy-from -d 'Load balancers allowed to send the PROXY header: an address or CIDR block; a connection from elsewhere on a proxy_protocol listener is reset; repeatable' -r
complete -c logsinkd -s f -l foreground -d 'Stay in the foreground and log diagnostics to stderr (use this under systemd)'
complete -c logsinkd -l proxy-protocol -d 'Every TCP connection starts with a PROXY protocol header (v1 or v2, as a load balancer such as HAProxy sends): the client it names is the peer recorded and matched against allow; needs proxy_from; a listener\'s table may override it [default: off]'
complete -c logsinkd -s t -l check-config -d 'Validate the configuration, print the effective settings and exit (0 valid, 1 invalid)'
complete -c logsinkd -s h -l help -d 'Print help'
complete -c logsinkd -s V -l version -d 'Print version'
