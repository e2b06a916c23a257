// A third-party Dataverse client, dynamics-web-api (Aleksandr Rogov), used as its README shows:
// only the server URL, the token callback and the CA (NODE_EXTRA_CA_CERTS) point it at the
// endpoints under test. Run by tests/contract/test_dynamics_web_api.py, which checks the JSON
// summary printed on stdout.
//
// Environment: BCDV_DV_URL (organisation URL), BCDV_DV_TOKEN (bearer for <org>/.default),
// BCDV_NAME (a unique prefix: every record made here is named after it and deleted at the end).
import { randomUUID } from "node:crypto";
import { DynamicsWebApi } from "dynamics-web-api";

const serverUrl = process.env.BCDV_DV_URL;
const token = process.env.BCDV_DV_TOKEN;
const prefix = process.env.BCDV_NAME;
if (!serverUrl || !token || !prefix) {
  console.error("BCDV_DV_URL, BCDV_DV_TOKEN and BCDV_NAME are required");
  process.exit(2);
}

const api = new DynamicsWebApi({
  serverUrl,
  dataApi: { version: "9.2" },
  onTokenRefresh: async () => token,
  propagateErrors: true,
});
const collection = "accounts";
const made = [];

async function create(data) {
  const id = await api.create({ collection, data });
  made.push(id);
  return id;
}

async function allPages(request) {
  const sizes = [];
  const names = [];
  let page = await api.retrieveMultiple(request);
  for (;;) {
    sizes.push(page.value.length);
    names.push(...page.value.map((r) => r.name));
    if (!page.oDataNextLink) break;
    page = await api.retrieveMultiple(request, page.oDataNextLink);
  }
  return { sizes, names };
}

function errorOf(err) {
  return { status: err.status ?? null, code: err.code ?? null, message: err.message };
}

const summary = {};
try {
  const id = await create({ name: `${prefix}-main`, telephone1: "555 0100" });
  summary.created = id;
  summary.retrieved = await api.retrieve({ collection, key: id, select: ["name", "telephone1"] });

  for (let i = 0; i < 5; i++) await create({ name: `${prefix}-page-${i}` });
  summary.paging = await allPages({
    collection, select: ["name"], filter: `startswith(name,'${prefix}-page-')`,
    orderBy: ["name asc"], maxPageSize: 2,
  });

  await api.update({ collection, key: id, data: { telephone1: "555 0199" } });
  summary.updated = await api.retrieve({ collection, key: id, select: ["telephone1"] });

  const upsertId = randomUUID();
  made.push(upsertId);
  await api.upsert({ collection, key: upsertId, data: { name: `${prefix}-upsert` } });
  await api.upsert({ collection, key: upsertId, data: { telephone1: "555 0111" } });
  summary.upserted = await api.retrieve({
    collection, key: upsertId, select: ["name", "telephone1"],
  });

  api.startBatch();
  api.create({ collection, data: { name: `${prefix}-batch` } });
  api.update({ collection, key: id, data: { description: "batched" } });
  const responses = await api.executeBatch();
  const batchId = responses[0];
  made.push(batchId);
  summary.batch = {
    count: responses.length,
    created: await api.retrieve({ collection, key: batchId, select: ["name"] }),
    updated: await api.retrieve({ collection, key: id, select: ["description"] }),
  };

  await api.deleteRecord({ collection, key: id });
  try {
    await api.retrieve({ collection, key: id, select: ["name"] });
    summary.deleted = { status: null, code: null, message: "retrieve of a deleted record succeeded" };
  } catch (err) {
    summary.deleted = errorOf(err);
  }
} catch (err) {
  summary.error = errorOf(err);
} finally {
  summary.made = made;
  for (const key of made) {
    try {
      await api.deleteRecord({ collection, key });
    } catch (err) {
      if (err.status !== 404) summary.cleanup_error = errorOf(err);
    }
  }
}
console.log(JSON.stringify(summary));
process.exit(summary.error || summary.cleanup_error ? 1 : 0);
