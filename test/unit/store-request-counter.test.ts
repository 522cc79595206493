import { describe, expect, it } from 'vitest';
import { RequestCounter } from '#store/instrument.ts';

describe('RequestCounter', () => {
  it('classifies data-plane operations as reads or writes', () => {
    const counter = new RequestCounter();
    for (const operation of [
      'GetItem',
      'Query',
      'Scan',
      'BatchGetItem',
      'PutItem',
      'UpdateItem',
      'DeleteItem',
    ]) {
      counter.record(operation, {});
    }
    expect(counter.snapshot()).toEqual({
      reads: 4,
      writes: 3,
      byOperation: {
        GetItem: 1,
        Query: 1,
        Scan: 1,
        BatchGetItem: 1,
        PutItem: 1,
        UpdateItem: 1,
        DeleteItem: 1,
      },
      batchItemsWritten: 0,
    });
  });

  it('adds up the put and delete requests of batch writes over every table', () => {
    const counter = new RequestCounter();
    counter.record('BatchWriteItem', { RequestItems: { a: [{}, {}, {}], b: [{}] } });
    counter.record('BatchWriteItem', { RequestItems: { a: [{}] } });
    expect(counter.snapshot()).toEqual({
      reads: 0,
      writes: 2,
      byOperation: { BatchWriteItem: 2 },
      batchItemsWritten: 5,
    });
  });

  it('starts from zero after reset', () => {
    const counter = new RequestCounter();
    counter.record('PutItem', {});
    counter.reset();
    expect(counter.snapshot()).toEqual({ reads: 0, writes: 0, byOperation: {}, batchItemsWritten: 0 });
  });

  it('hands out snapshots that later requests do not change', () => {
    const counter = new RequestCounter();
    counter.record('PutItem', {});
    const snapshot = counter.snapshot();
    counter.record('PutItem', {});
    expect(snapshot.byOperation).toEqual({ PutItem: 1 });
  });
});
