"""One repository per aggregate, each over the session of the unit of work it hangs off
(storage.uow.SqlUnitOfWork), so everything done through them commits or rolls back together."""
