//! HTTPS (docs/http.md, "TLS"): rustls with the ring provider, TLS 1.2 and
//! 1.3, one certificate chain and key from PEM files (SOUK_TLS_CERT,
//! SOUK_TLS_KEY), reloaded on SIGHUP for new connections.
//!
//! rustls is driven through its non-blocking API only: a connection's
//! encrypted bytes go between the socket and its `ServerConnection` with
//! `read_tls`/`write_tls`, never through a blocking stream, so the rules of
//! the plain path hold as they are (a worker writes what the socket takes
//! and parks the rest; a handshake that stalls is cut off by the I/O
//! thread's deadline sweep like a request head that does not come).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

use crate::limits::{TLS_PEM_FILE_BYTES_MAX, TLS_READ_BYTES_MAX, TLS_SEND_BUFFER_BYTES};

/// The certificate and key files and the configuration built from them;
/// `reload` swaps in a new one that new connections get.
pub struct Certificates {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Certificates {
    /// Reads and checks the pair; the error names the file at fault.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Certificates, String> {
        let config = build(cert_path, key_path)?;
        Ok(Certificates {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(config),
        })
    }

    /// Reads the files again; when the new pair is good, connections
    /// accepted from now on use it (open ones go on with theirs). A bad pair
    /// changes nothing and the error names the file. The files are read and
    /// parsed before the lock is taken, so accepting never waits on a disk.
    pub fn reload(&self) -> Result<(), String> {
        let config = build(&self.cert_path, &self.key_path)?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
        Ok(())
    }

    /// A server-side TLS session for a connection accepted now.
    pub(crate) fn session(&self) -> Result<TlsSession, rustls::Error> {
        let config = Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(TLS_SEND_BUFFER_BYTES));
        Ok(TlsSession {
            conn,
            close_notify_sent: false,
            first_byte: None,
            socket_unread: false,
        })
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
}

/// The server configuration for one pair of files.
fn build(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = read_pem_file(cert_path, "SOUK_TLS_CERT")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "SOUK_TLS_CERT {}: not a PEM certificate chain: {e}",
                cert_path.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "SOUK_TLS_CERT {}: no certificate (-----BEGIN CERTIFICATE-----) in the file",
            cert_path.display()
        ));
    }
    let key_pem = read_pem_file(key_path, "SOUK_TLS_KEY")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "SOUK_TLS_KEY {}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file: {e}",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "SOUK_TLS_KEY {} does not fit the certificate in SOUK_TLS_CERT {}: {e}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The whole file, refused past `TLS_PEM_FILE_BYTES_MAX`.
fn read_pem_file(path: &Path, variable: &str) -> Result<Vec<u8>, String> {
    let named = |what: String| format!("{variable} {}: {what}", path.display());
    let file = std::fs::File::open(path).map_err(|e| named(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(TLS_PEM_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| named(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > TLS_PEM_FILE_BYTES_MAX {
        return Err(named(format!(
            "larger than {TLS_PEM_FILE_BYTES_MAX} bytes; not a certificate or key file"
        )));
    }
    Ok(bytes)
}

/// One connection's TLS state.
pub(crate) struct TlsSession {
    conn: ServerConnection,
    close_notify_sent: bool,
    /// The first byte the peer sent: a TLS client's is 22, the content type
    /// of the handshake record that carries its ClientHello.
    first_byte: Option<u8>,
    /// The last `read` stopped at `TLS_READ_BYTES_MAX` before the socket
    /// said it had nothing more: read again before waiting for readiness
    /// (which is edge-triggered, and will not be told again).
    socket_unread: bool,
}

/// The content type of a TLS handshake record (RFC 8446 §5.1).
const HANDSHAKE_RECORD: u8 = 22;

impl TlsSession {
    /// Decrypted bytes into `buf`. Reads the socket until it has nothing
    /// more, `buf` is full or `TLS_READ_BYTES_MAX` encrypted bytes came in
    /// (rustls takes at most 4 KiB per `read_tls`), decrypting after each
    /// read: rustls's own buffers then hold at most one partial record
    /// (or a handshake message being joined), and its plaintext is drained
    /// into `buf` before the socket is read again, so its received-plaintext
    /// limit is never hit. `Ok(0)` when the peer closed (close_notify, which
    /// is answered with ours, or a FIN), `WouldBlock` when no whole record
    /// is in yet (the handshake in progress, or part of a record). A peer
    /// whose first byte does not open a TLS handshake record (plain HTTP on
    /// this port) gets no byte back, not even an alert; any other TLS
    /// failure gets the alert rustls queued. Both are `InvalidData` errors.
    pub(crate) fn read(&mut self, socket: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        let mut from_socket = 0;
        self.socket_unread = false;
        loop {
            if filled < buf.len() {
                match self.conn.reader().read(&mut buf[filled..]) {
                    // The peer's close_notify, after all its data.
                    Ok(0) => return Ok(self.closed(socket, filled)),
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // A FIN without close_notify (UnexpectedEof), after all its data.
                    Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
                }
            }
            if filled == buf.len() {
                break;
            }
            if from_socket >= TLS_READ_BYTES_MAX {
                self.socket_unread = true;
                break;
            }
            let mut source = FirstByte {
                socket,
                first: &mut self.first_byte,
            };
            match self.conn.read_tls(&mut source) {
                Ok(0) => return Ok(self.closed(socket, filled)),
                Ok(n) => from_socket += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            if let Err(e) = self.conn.process_new_packets() {
                log::debug!("TLS error: {e}");
                // Plain HTTP gets not a byte back (curl would show an alert
                // as an HTTP/0.9 answer). A peer that began a handshake gets
                // the alert rustls queued, if the socket takes it now.
                if self.first_byte == Some(HANDSHAKE_RECORD) {
                    let _ = self.conn.write_tls(socket);
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        if filled == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(filled)
    }

    /// The peer closed: what was read before (`filled` bytes) comes first;
    /// then, if it closed with close_notify, ours is sent (as far as the
    /// socket takes it now) and the connection is over.
    fn closed(&mut self, socket: &mut TcpStream, filled: usize) -> usize {
        let clean = self
            .conn
            .process_new_packets()
            .is_ok_and(|state| state.peer_has_closed());
        if filled == 0 && clean && self.close_notify() {
            let _ = self.conn.write_tls(socket);
        }
        filled
    }

    /// A read will not touch the socket and still find something: rustls
    /// holds decrypted bytes, or the peer's close_notify (epoll cannot
    /// know of either: their bytes were read already).
    pub(crate) fn has_input(&mut self) -> bool {
        // `process_new_packets` with no new input only reports the state.
        self.conn
            .process_new_packets()
            .is_ok_and(|state| state.plaintext_bytes_to_read() > 0 || state.peer_has_closed())
    }

    /// The last `read` left bytes in the socket (it stopped at its bound).
    pub(crate) fn socket_unread(&self) -> bool {
        self.socket_unread
    }

    /// Decrypted bytes are waiting in rustls.
    pub(crate) fn has_plaintext(&mut self) -> bool {
        self.conn
            .process_new_packets()
            .is_ok_and(|state| state.plaintext_bytes_to_read() > 0)
    }

    /// Encrypted bytes are waiting for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// One step of sending `plain`: writes pending records to the socket if
    /// there are any, else encrypts what of `plain` rustls takes. Returns
    /// how many bytes of `plain` were taken (0 while records were written).
    /// `Ok(None)`: nothing left to do.
    pub(crate) fn write_step(
        &mut self,
        socket: &mut TcpStream,
        plain: &[u8],
    ) -> io::Result<Option<usize>> {
        if self.conn.wants_write() {
            return match self.conn.write_tls(socket)? {
                0 => Err(io::ErrorKind::WriteZero.into()),
                _ => Ok(Some(0)),
            };
        }
        if plain.is_empty() {
            return Ok(None);
        }
        match self.conn.writer().write(plain)? {
            // rustls takes nothing only with records pending, which are
            // written first; anything else is a session that cannot go on.
            0 => Err(io::Error::other("TLS session does not take data")),
            n => Ok(Some(n)),
        }
    }

    /// Queues the close_notify alert once; `true` if it was queued now.
    pub(crate) fn close_notify(&mut self) -> bool {
        if self.close_notify_sent {
            return false;
        }
        self.close_notify_sent = true;
        self.conn.send_close_notify();
        true
    }
}

/// The socket as rustls reads it, noting the first byte the peer sent.
struct FirstByte<'a> {
    socket: &'a mut TcpStream,
    first: &'a mut Option<u8>,
}

impl Read for FirstByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        if self.first.is_none() && n > 0 {
            *self.first = Some(buf[0]);
        }
        Ok(n)
    }
}
