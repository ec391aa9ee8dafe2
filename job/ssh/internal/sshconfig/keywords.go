package sshconfig

import (
	"strings"
)

// kind is how a keyword's arguments are read and checked.
type kind int

const (
	kAny     kind = iota // known to OpenSSH, not read by fanout: any arguments
	kOne                 // one argument
	kFlag                // yes, no, true, false
	kStrict              // StrictHostKeyChecking
	kPort                // a port number or service name
	kTime                // seconds, with units, or none
	kInt                 // an integer
	kFiles               // a list of files, or none alone
	kKex                 // an algorithm list, +, - or ^ form
	kJump                // ProxyJump
	kCommand             // the rest of the line (ProxyCommand)
	kHost                // Host patterns
	kMatch               // Match criteria
	kInclude             // Include files
	kCanon               // CanonicalizeHostname
)

// keywords are OpenSSH 9's client keywords (lower case), with how fanout
// reads them; a keyword not here is unknown (an error unless IgnoreUnknown
// names it).
var keywords = map[string]kind{
	"host": kHost, "match": kMatch, "include": kInclude,
	"hostname": kOne, "user": kOne, "port": kPort, "identityfile": kOne, "identityfile2": kOne,
	"identitiesonly": kFlag, "proxyjump": kJump, "proxycommand": kCommand, "connecttimeout": kTime,
	"stricthostkeychecking": kStrict, "userknownhostsfile": kFiles, "globalknownhostsfile": kFiles,
	"hashknownhosts": kFlag, "kexalgorithms": kKex, "batchmode": kFlag, "loglevel": kOne,
	"hostkeyalias": kOne, "ignoreunknown": kOne, "canonicalizehostname": kCanon,
	"revokedhostkeys": kOne, "knownhostscommand": kCommand,

	"forwardx11": kFlag, "forwardx11trusted": kFlag, "gatewayports": kFlag, "exitonforwardfailure": kFlag,
	"passwordauthentication": kFlag, "kbdinteractiveauthentication": kFlag,
	"challengeresponseauthentication": kFlag, "skeyauthentication": kFlag, "tisauthentication": kFlag,
	"hostbasedauthentication": kFlag, "checkhostip": kFlag, "tcpkeepalive": kFlag, "keepalive": kFlag,
	"nohostauthenticationforlocalhost": kFlag, "clearallforwardings": kFlag, "enablesshkeysign": kFlag,
	"visualhostkey": kFlag, "stdinnull": kFlag, "forkafterauthentication": kFlag, "proxyusefdpass": kFlag,
	"permitlocalcommand": kFlag, "streamlocalbindunlink": kFlag, "canonicalizefallbacklocal": kFlag,
	"enableescapecommandline": kFlag, "gssapiauthentication": kFlag, "gssapidelegatecredentials": kFlag,
	"connectionattempts": kInt, "numberofpasswordprompts": kInt, "serveralivecountmax": kInt,
	"canonicalizemaxdots": kInt, "requiredrsasize": kInt,
	"serveraliveinterval": kTime, "forwardx11timeout": kTime,
	"localcommand": kCommand, "remotecommand": kCommand,

	"protocol": kAny, "cipher": kAny, "fallbacktorsh": kAny, "globalknownhostsfile2": kAny,
	"rhostsauthentication": kAny, "userknownhostsfile2": kAny, "useroaming": kAny, "usersh": kAny,
	"useprivilegedport": kAny, "afstokenpassing": kAny, "kerberosauthentication": kAny,
	"kerberostgtpassing": kAny, "rsaauthentication": kAny, "rhostsrsaauthentication": kAny,
	"compressionlevel": kAny, "pkcs11provider": kAny, "smartcarddevice": kAny, "forwardagent": kAny,
	"xauthlocation": kAny, "kbdinteractivedevices": kAny, "pubkeyauthentication": kAny,
	"dsaauthentication": kAny, "certificatefile": kAny, "addkeystoagent": kAny, "identityagent": kAny,
	"ciphers": kAny, "macs": kAny, "remoteforward": kAny, "localforward": kAny, "permitremoteopen": kAny,
	"escapechar": kAny, "compression": kAny, "syslogfacility": kAny, "logverbose": kAny,
	"dynamicforward": kAny, "preferredauthentications": kAny, "hostkeyalgorithms": kAny,
	"casignaturealgorithms": kAny, "bindaddress": kAny, "bindinterface": kAny, "verifyhostkeydns": kAny,
	"rekeylimit": kAny, "addressfamily": kAny, "sendenv": kAny, "setenv": kAny, "controlpath": kAny,
	"controlmaster": kAny, "controlpersist": kAny, "tunnel": kAny, "tunneldevice": kAny, "ipqos": kAny,
	"requesttty": kAny, "sessiontype": kAny, "canonicaldomains": kAny,
	"canonicalizepermittedcnames": kAny, "streamlocalbindmask": kAny, "fingerprinthash": kAny,
	"updatehostkeys": kAny, "hostbasedacceptedalgorithms": kAny, "hostbasedkeytypes": kAny,
	"pubkeyacceptedalgorithms": kAny, "pubkeyacceptedkeytypes": kAny, "securitykeyprovider": kAny,
	// Debian's and Fedora's GSSAPI key exchange patch.
	"gssapikeyexchange": kAny, "gssapiclientidentity": kAny, "gssapiserveridentity": kAny,
	"gssapirenewalforcesrekey": kAny, "gssapitrustdns": kAny, "gssapikexalgorithms": kAny,
}

// matchCriteria are the Match criteria OpenSSH 9 knows, and whether they
// take an argument.
var matchCriteria = map[string]bool{
	"all": false, "canonical": false, "final": false,
	"host": true, "originalhost": true, "user": true, "localuser": true, "exec": true,
}

// checkLine checks l's arguments as OpenSSH does when it reads the line,
// wherever the line is (OpenSSH refuses a bad value in a block that never
// applies too).
func checkLine(l *line) error {
	k, known := keywords[l.kw]
	if !known {
		l.bad = "Bad configuration option: " + l.key + " (not an OpenSSH keyword; IgnoreUnknown " + l.key + " before it skips it)"
		return nil
	}
	switch k {
	case kOne, kFlag, kStrict, kPort, kTime, kInt, kKex, kCanon:
		if len(l.args) == 0 || l.args[0] == "" {
			return l.errorf("%s: missing argument", l.key)
		}
		if len(l.args) > 1 {
			return l.errorf("%s: extra arguments at end of line (%q)", l.key, strings.Join(l.args[1:], " "))
		}
	}
	v := ""
	if len(l.args) > 0 {
		v = l.args[0]
	}
	var err error
	switch k {
	case kFlag:
		_, err = Flag(l.key, v)
	case kStrict:
		_, err = Policy(v)
	case kPort:
		_, err = ParsePort(v)
	case kTime:
		_, _, err = ParseTime(v)
	case kInt:
		_, err = parseInt(v)
	case kCanon:
		switch strings.ToLower(v) {
		case "yes", "no", "true", "false", "always":
		default:
			err = errorf("%s %q: want yes, no or always", l.kw, v)
		}
	case kKex:
		err = checkKex(v)
	case kFiles:
		for i, a := range l.args {
			if a == "" {
				return l.errorf("%s: empty argument", l.kw)
			}
			if strings.EqualFold(a, "none") && len(l.args) > 1 {
				return l.errorf("%s: \"none\" must appear alone (argument %d)", l.kw, i+1)
			}
		}
	case kJump:
		_, err = ParseJump(l.rest)
	case kHost:
		for _, a := range l.args {
			if a == "" {
				return l.errorf("Host: empty pattern")
			}
		}
	case kMatch:
		err = checkMatch(l.args)
	case kInclude:
		for _, a := range l.args {
			if a == "" {
				return l.errorf("Include: empty argument")
			}
		}
	}
	if err != nil {
		return l.errorf("%v", err)
	}
	return nil
}

// checkMatch checks the syntax of a Match line: criteria OpenSSH knows,
// with their arguments, "all" alone or after one criterion.
func checkMatch(args []string) error {
	n := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "#") {
			break
		}
		crit := strings.ToLower(strings.TrimPrefix(a, "!"))
		takes, ok := matchCriteria[crit]
		if !ok {
			return errorf("Match %s: unsupported criterion (OpenSSH 9 knows all, canonical, final, exec, host, originalhost, user, localuser)", a)
		}
		if crit == "all" {
			if n > 1 || (i+1 < len(args) && !strings.HasPrefix(args[i+1], "#")) {
				return errorf("Match: %q cannot be combined with other criteria", a)
			}
			return nil
		}
		n++
		if takes {
			if i+1 >= len(args) || args[i+1] == "" || strings.HasPrefix(args[i+1], "#") {
				return errorf("Match %s: missing argument", a)
			}
			i++
		}
	}
	if n == 0 {
		return errorf("Match: no criteria")
	}
	return nil
}
