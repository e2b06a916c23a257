"""``$metadata`` (CSDL) of the Business Central emulator, generated from the served schema."""
from __future__ import annotations

from functools import lru_cache
from xml.sax.saxutils import escape

from bcdv_emulators.bc.schema import ENTITIES, NAVIGATION, EntityDef

ENUMS = {("customers", "blocked"): "customerBlocked", ("vendors", "blocked"): "vendorBlocked",
         ("customers", "type"): "contactType", ("contacts", "type"): "contactType",
         ("contacts", "contactBusinessRelation"): "contactBusinessRelation"}


def _enum_types() -> str:
    seen: dict[str, tuple[str, ...]] = {}
    for ent in ENTITIES:
        for p in ent.props:
            name = ENUMS.get((ent.set_name, p.name))
            if name:
                seen[name] = p.members
    out = []
    for name, members in seen.items():
        body = "".join(f'<Member Name="{escape(m)}" Value="{i}"/>' for i, m in enumerate(members))
        out.append(f'<EnumType Name="{name}">{body}</EnumType>')
    return "".join(out)


def _entity_type(ent: EntityDef) -> str:
    props = []
    for p in ent.props:
        enum = ENUMS.get((ent.set_name, p.name))
        typ = f"Microsoft.NAV.{enum}" if enum else p.edm
        attrs = f'Name="{p.name}" Type="{typ}"'
        if p.name == ent.key:
            attrs += ' Nullable="false"'
        if p.max_len and p.kind in ("string", "code"):
            attrs += f' MaxLength="{p.max_len}"'
        if p.kind == "decimal":
            attrs += ' Scale="Variable"'
        ro = ('<Annotation Term="Org.OData.Core.V1.Computed" Bool="true"/>'
              if p.read_only else "")
        props.append(f"<Property {attrs}>{ro}</Property>" if ro else f"<Property {attrs}/>")
    navs = "".join(f'<NavigationProperty Name="{n}" Type="Microsoft.NAV.{_type_of(t)}"/>'
                   for n, (_, t) in NAVIGATION.get(ent.set_name, {}).items())
    return (f'<EntityType Name="{ent.type_name}"><Key><PropertyRef Name="{ent.key}"/></Key>'
            f'{"".join(props)}{navs}</EntityType>')


def _type_of(set_name: str) -> str:
    return next(e.type_name for e in ENTITIES if e.set_name == set_name)


@lru_cache(maxsize=1)
def metadata_xml() -> str:
    """The CSDL document."""
    types = "".join(_entity_type(e) for e in ENTITIES)
    sets = []
    for e in ENTITIES:
        binds = "".join(f'<NavigationPropertyBinding Path="{n}" Target="{t}"/>'
                        for n, (_, t) in NAVIGATION.get(e.set_name, {}).items())
        sets.append(f'<EntitySet Name="{e.set_name}" EntityType="Microsoft.NAV.{e.type_name}">'
                    f"{binds}</EntitySet>")
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">'
            '<edmx:DataServices><Schema Namespace="Microsoft.NAV" '
            'xmlns="http://docs.oasis-open.org/odata/ns/edm">'
            f'{_enum_types()}{types}<EntityContainer Name="NAV">{"".join(sets)}'
            "</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>")
