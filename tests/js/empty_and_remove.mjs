// The JS SDK v3's ordinary "empty the bucket, then remove it" flow, as an
// application would write it. Run by tests/e2e/test_bucket_delete.py:
//   node empty_and_remove.mjs ENDPOINT BUCKET
// with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION in the
// environment. Prints one JSON line of what it saw; exits 1 on any error.
import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand,
  ListObjectsV2Command, DeleteObjectsCommand, DeleteBucketCommand,
} from "@aws-sdk/client-s3";

const [endpoint, bucket] = process.argv.slice(2);
const s3 = new S3Client({ endpoint, forcePathStyle: true, maxAttempts: 1 });

async function main() {
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const keys = ["a.txt", "dir/b.txt", "dir/c.bin"];
  for (const round of [1, 2]) {  // two versions of each key
    for (const key of keys) {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: `${key}#${round}` }));
    }
  }
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/b.txt" }));
  const body = await got.Body.transformToString();
  let deleted = 0;
  let token;
  do {
    const page = await s3.send(new ListObjectsV2Command(
      { Bucket: bucket, MaxKeys: 2, ContinuationToken: token }));
    const objects = (page.Contents ?? []).map((o) => ({ Key: o.Key }));
    if (objects.length) {
      const out = await s3.send(new DeleteObjectsCommand(
        { Bucket: bucket, Delete: { Objects: objects } }));
      if (out.Errors?.length) throw new Error(JSON.stringify(out.Errors));
      deleted += out.Deleted.length;
    }
    token = page.NextContinuationToken;
  } while (token);
  const removed = await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
  console.log(JSON.stringify({ body, deleted, status: removed.$metadata.httpStatusCode }));
}

main().catch((err) => {
  console.error(`${err.name}: ${err.message}`);
  process.exit(1);
});
