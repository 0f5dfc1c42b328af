// OpenAI's npm client library against recur-server's HTTP API: a completion, the same streamed,
// three samples streamed (n, each chunk naming its choice), an echo with logprobs, the model list,
// and a request for a model not served. Prints what it got as one JSON object.
// Usage: node openai_client.mjs BASE_URL   (e.g. http://127.0.0.1:8000/v1)
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "unused", maxRetries: 0 });
const request = { model: "tiny", prompt: "Once ", max_tokens: 16, temperature: 1.0, seed: 5 };

const completion = await client.completions.create(request);
let streamed = "";
for await (const chunk of await client.completions.create({ ...request, stream: true })) {
  streamed += chunk.choices[0]?.text ?? "";
}
const samples = ["", "", ""];
for await (const chunk of await client.completions.create({ ...request, n: 3, stream: true })) {
  for (const choice of chunk.choices) samples[choice.index] += choice.text;
}
const echoed = await client.completions.create({ ...request, echo: true, logprobs: 1 });
const models = [];
for await (const model of client.models.list()) models.push(model.id);
let errorStatus = null;
try {
  await client.completions.create({ ...request, model: "not-served" });
} catch (e) {
  if (!(e instanceof OpenAI.APIError)) throw e;
  errorStatus = e.status;
}
console.log(JSON.stringify({ text: completion.choices[0].text, streamed, samples,
                             echo: echoed.choices[0].text,
                             echo_tokens: echoed.choices[0].logprobs.tokens.length, models,
                             error_status: errorStatus }));
