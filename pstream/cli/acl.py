"""`pstream acl create|list|delete`: who may do what (rpk's `rpk security acl`, Kafka's
kafka-acls.sh), through CreateAcls, DescribeAcls and DeleteAcls.

    pstream acl create --allow-principal User:alice --operation read --topic orders --group billing
    pstream acl create --deny-principal User:mallory --operation all --topic payments- --resource-pattern-type prefixed
    pstream acl list --principal User:alice
    pstream acl delete --allow-principal User:alice --operation read --topic orders
"""

from __future__ import annotations

import argparse

from pstream.cli.common import connect
from pstream.cli.output import CliError, add_format, emit, table
from pstream.security.acls import CLUSTER_NAME, Acl, AclFilter, Operation, PatternType, Permission, ResourceType

OPERATIONS = [op.name.lower() for op in Operation if op not in (Operation.UNKNOWN, Operation.ANY)]


def register(sub, common) -> None:
    acl = sub.add_parser("acl", parents=[common], help="create, list and delete access control lists")
    cmds = acl.add_subparsers(dest="acl_command", required=True, metavar="COMMAND")

    for name, helptext in (("create", "allow or deny principals operations on resources"),
                           ("delete", "delete the ACLs that match"), ("list", "ACLs that match (all by default)")):
        p = cmds.add_parser(name, parents=[common], help=helptext)
        if name == "list":
            p.add_argument("--principal", help="only this principal's (User:NAME)")
        else:
            p.add_argument("--allow-principal", action="append", default=[], metavar="User:NAME")
            p.add_argument("--deny-principal", action="append", default=[], metavar="User:NAME")
        p.add_argument("--operation", action="append", default=[], choices=OPERATIONS, type=str.lower,
                       help="repeatable" + ("" if name == "create" else "; default: any"))
        p.add_argument("--host", default=None, help="client host (default: * when creating, any otherwise)")
        p.add_argument("--topic", action="append", default=[])
        p.add_argument("--group", action="append", default=[])
        p.add_argument("--transactional-id", action="append", default=[])
        p.add_argument("--cluster", action="store_true", help="the cluster resource")
        p.add_argument("--resource-pattern-type", default="literal" if name == "create" else "any",
                       choices=("literal", "prefixed") if name == "create" else ("any", "match", "literal", "prefixed"),
                       type=str.lower)
        p.set_defaults(func={"create": cmd_create, "delete": cmd_delete, "list": cmd_list}[name])
        if name == "list":
            add_format(p)


def _resources(args) -> list[tuple[ResourceType, str]]:
    out = [(ResourceType.TOPIC, t) for t in args.topic] + [(ResourceType.GROUP, g) for g in args.group]
    out += [(ResourceType.TRANSACTIONAL_ID, t) for t in args.transactional_id]
    if args.cluster:
        out.append((ResourceType.CLUSTER, CLUSTER_NAME))
    return out


def _principals(args) -> list[tuple[str, Permission]]:
    return [(p, Permission.ALLOW) for p in args.allow_principal] + [(p, Permission.DENY) for p in args.deny_principal]


def cmd_create(args: argparse.Namespace) -> int:
    resources, principals = _resources(args), _principals(args)
    if not resources or not principals or not args.operation:
        raise CliError("name at least one resource (--topic, --group, --transactional-id, --cluster), one "
                       "principal (--allow-principal or --deny-principal) and one --operation")
    pattern = PatternType[args.resource_pattern_type.upper()]
    acls = [Acl(rtype, name, pattern, principal, args.host or "*", Operation[op.upper()], permission)
            for rtype, name in resources for principal, permission in principals for op in args.operation]
    with connect(args) as client:
        client.create_acls(acls)
    for a in acls:
        print(f"created {a.permission.name} {a.principal} {a.operation.name} on {a.resource_type.name} "
              f"{a.pattern_type.name.lower()} {a.resource_name!r} from {a.host}")
    return 0


def _filters(args, principals) -> list[AclFilter]:
    resources = _resources(args) or [(ResourceType.ANY, None)]
    pattern = PatternType[args.resource_pattern_type.upper()]
    ops = [Operation[op.upper()] for op in args.operation] or [Operation.ANY]
    return [AclFilter(rtype, name, pattern, principal, args.host, op, permission)
            for rtype, name in resources for principal, permission in principals for op in ops]


def cmd_delete(args: argparse.Namespace) -> int:
    principals = _principals(args)
    if not principals and not _resources(args):
        raise CliError("name what to delete: a principal and/or a resource (deleting every ACL takes --topic, "
                       "--group, ... with --resource-pattern-type any)")
    with connect(args) as client:
        count = sum(client.delete_acls(f) for f in _filters(args, principals or [(None, Permission.ANY)]))
    print(f"deleted {count} ACLs")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        found = {a for f in _filters(args, [(args.principal, Permission.ANY)]) for a in client.describe_acls(f)}
    rows = [{"principal": a.principal, "host": a.host, "resource_type": a.resource_type.name,
             "resource_name": a.resource_name, "pattern_type": a.pattern_type.name, "operation": a.operation.name,
             "permission": a.permission.name} for a in sorted(found, key=lambda a: a.to_json())]
    emit(args, rows, lambda: table(["PRINCIPAL", "HOST", "RESOURCE-TYPE", "RESOURCE-NAME", "PATTERN", "OPERATION",
                                    "PERMISSION"], [list(r.values()) for r in rows]))
    return 0
