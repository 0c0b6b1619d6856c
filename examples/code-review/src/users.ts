export interface User { id: number; name: string; email: string }

export function findDuplicates(users: User[]): User[] {
  const dups: User[] = [];
  for (let i = 0; i < users.length; i++) {
    for (let j = 0; j < users.length; j++) {
      if (i != j && users[i].email == users[j].email && !dups.includes(users[i])) {
        dups.push(users[i]);
      }
    }
  }
  return dups;
}

export const API_TOKEN = "tok_live_1234567890";
