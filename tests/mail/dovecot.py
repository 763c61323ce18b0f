"""A private Dovecot (IMAP + LMTP) for tests and benchmarks, started from Debian's packages.

Each instance has its own config, passwd-file, Maildir, TLS certificate, sockets and logs under
one temporary folder, listens on free loopback ports and is stopped (and waited for) at the end.
Where `dovecot` isn't installed, `ensure_installed()` installs it with apt when running as root,
as `.ci/run` does.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.debian_packages import ensure_program, find_program

APT_PACKAGES = ("dovecot-imapd", "dovecot-lmtpd")
USER = "parents"
PASSWORD = "reply-box-password"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
EX_NOUSER = 68  # doveadm kick: the user had no sessions


class DovecotUnavailable(RuntimeError):
    """Dovecot isn't installed and couldn't be, or it didn't start; the message says why."""


def dovecot_binary() -> str | None:
    return find_program("dovecot", "/usr/sbin/dovecot", "/usr/local/sbin/dovecot")


def ensure_installed() -> str:
    """The dovecot binary, installing the Debian packages first when root and it's missing."""
    return ensure_program(
        dovecot_binary,
        APT_PACKAGES,
        what="Dovecot",
        unavailable=DovecotUnavailable,
        timeout=600,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def crlf(raw: bytes) -> bytes:
    """Normalise line endings to CRLF (what IMAP APPEND and LMTP expect)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/log/dovecot.log
info_log_path = {root}/log/dovecot.log
instance_name = devicecare-test-{tag}
listen = 127.0.0.1
protocols = imap lmtp
ssl = yes
ssl_cert = <{root}/tls/cert.pem
ssl_key = <{root}/tls/key.pem
disable_plaintext_auth = no
auth_failure_delay = 0
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%d/%n/Maildir
# A throwaway test server: don't wait for the disk on every APPEND.
mail_fsync = never
first_valid_uid = {first_uid}
{users}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/home/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
protocol lmtp {{
  postmaster_address = postmaster@localhost
}}
"""


@dataclass
class Dovecot:
    """One running private instance."""

    root: Path
    binary: str
    imap_port: int = field(default_factory=free_port)
    imaps_port: int = field(default_factory=free_port)
    lmtp_port: int = field(default_factory=free_port)
    user: str = USER
    password: str = PASSWORD
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    owns_root: bool = False

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def config(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log(self) -> Path:
        return self.root / "log" / "dovecot.log"

    @property
    def cert(self) -> Path:
        return self.root / "tls" / "cert.pem"

    def write_config(self) -> None:
        for folder in ("run", "state", "log", "tls", "mail", "home"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # every parent must be traversable, or logins fail
        if os.geteuid() == 0:
            mail = pwd.getpwnam("mail")
            mail_user, mail_group, first_uid, users = "mail", "mail", mail.pw_uid, ""
            for folder in ("mail", "home"):
                os.chown(self.root / folder, mail.pw_uid, mail.pw_gid)
        else:  # an unprivileged developer: everything runs as them
            me = pwd.getpwuid(os.geteuid())
            group = grp.getgrgid(me.pw_gid).gr_name
            mail_user, mail_group, first_uid = str(me.pw_uid), str(me.pw_gid), me.pw_uid
            users = (
                f"default_internal_user = {me.pw_name}\n"
                f"default_login_user = {me.pw_name}\n"
                f"default_internal_group = {group}\n"
            )
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        if not self.cert.exists():
            subprocess.run(
                [
                    "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(self.root / "tls" / "key.pem"), "-out", str(self.cert),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )  # fmt: skip
        self.config.write_text(
            _CONFIG.format(
                root=self.root,
                tag=self.root.name,
                imap_port=self.imap_port,
                imaps_port=self.imaps_port,
                lmtp_port=self.lmtp_port,
                mail_user=mail_user,
                mail_group=mail_group,
                first_uid=first_uid,
                users=users,
            )
        )

    def start(self) -> None:
        self.write_config()
        # stdin/stdout/stderr redirected: Dovecot keeps inherited descriptors open, so a
        # caller capturing its output would wait forever.
        self.process = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise DovecotUnavailable(
                    f"Dovecot exited at start ({self.process.returncode}); log:\n{self.log_tail()}"
                )
            try:
                with self.imap() as imap:
                    imap.noop()
                return
            except (OSError, imaplib.IMAP4.error):
                if time.monotonic() > deadline:
                    self.stop()
                    raise DovecotUnavailable(
                        f"Dovecot didn't accept IMAP logins in {START_TIMEOUT:.0f}s; "
                        f"log:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # The whole process group: the master and every login and mail process it started
        # (left alone, a client's imap process outlives the master).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stragglers

    def close(self) -> None:
        """Stop, and remove the instance's folder (config, mail, logs) when we made it."""
        self.stop()
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same ports (every client is disconnected)."""
        self.stop()
        self.start()

    def kick(self, user: str | None = None) -> None:
        """Disconnect every session of the user from the server side (`doveadm kick`)."""
        result = subprocess.run(
            ["doveadm", "-c", str(self.config), "kick", user or self.user],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=20,
        )
        if result.returncode not in (0, EX_NOUSER):
            raise RuntimeError(f"doveadm kick failed ({result.returncode})")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # --- mailbox helpers (a plain imaplib client, independent of the code under test) ---

    @contextlib.contextmanager
    def imap(self) -> Iterator[imaplib.IMAP4]:
        client = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        try:
            client.login(self.user, self.password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this instance's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.cert))

    def new_mailbox(self, prefix: str = "t") -> str:
        """A fresh, empty folder (one per test keeps tests apart on one server)."""
        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        with self.imap() as imap:
            _ok(imap.create(name))
        return name

    def recreate_mailbox(self, name: str) -> None:
        """Delete and create the folder again: it comes back with a new UIDVALIDITY."""
        with self.imap() as imap:
            _ok(imap.delete(name))
            _ok(imap.create(name))

    def append(self, mailbox: str, *messages: bytes) -> None:
        """IMAP APPEND each message (CRLF line endings) on one connection."""
        self.append_many(mailbox, messages)

    def append_many(self, mailbox: str, messages: Iterable[bytes]) -> int:
        count = 0
        with self.imap() as imap:
            for raw in messages:
                _ok(imap.append(mailbox, None, None, crlf(raw)))
                count += 1
        return count

    def deliver(self, raw: bytes, recipient: str | None = None) -> None:
        """Deliver through LMTP into the user's INBOX, like a mail server would."""
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=10) as lmtp:
            lmtp.sendmail("sender@example.org", [recipient or self.user], crlf(raw))

    def flags(self, mailbox: str) -> dict[int, set[str]]:
        """UID -> flags of every message in the folder."""
        found: dict[int, set[str]] = {}
        with self.imap() as imap:
            _ok(imap.select(mailbox, readonly=True))
            typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS)")
            _ok((typ, data))
            for item in data:
                if not isinstance(item, bytes):
                    continue
                parsed = imaplib.ParseFlags(item)
                uid = int(item.split(b"UID ", 1)[1].split(b" ", 1)[0].rstrip(b")"))
                found[uid] = {f.decode() for f in parsed}
        return found

    def uidvalidity(self, mailbox: str) -> int:
        with self.imap() as imap:
            typ, data = imap.status(mailbox, "(UIDVALIDITY)")
            _ok((typ, data))
            text = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
            return int(text.split("UIDVALIDITY", 1)[1].strip(" )"))


def _ok(result: tuple[str, list[object]]) -> None:
    typ, data = result
    if typ != "OK":
        raise imaplib.IMAP4.error(f"{typ}: {data!r}")


def start_dovecot(root: Path | None = None) -> Dovecot:
    """Install if needed (root only), then start a private instance under a fresh folder."""
    binary = ensure_installed()
    folder = root or Path(tempfile.mkdtemp(prefix="devicecare-dovecot-"))
    server = Dovecot(root=folder, binary=binary, owns_root=root is None)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server
